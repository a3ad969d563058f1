"""Attributing MKD's per-image detection score to the input pixels with Captum.

Salehi et al. (CVPR 2021, Sec. 3.3) localise an anomaly by the gradient of the per-image distillation loss
with respect to the input, through both the frozen source network and the cloner, and compare vanilla
gradients, SmoothGrad and guided backpropagation (their Table 8). kdmed computes four attributions:

- `saliency`: the input gradient (Captum `Saliency`), the paper's default;
- `smoothgrad`: the input gradient averaged over `smoothgrad_samples` copies of the image with Gaussian
  noise of standard deviation `smoothgrad_noise` (Smilkov et al., 2017; 0.15 of the [0, 1] range is their
  recommended level), Captum `NoiseTunnel`; the raw gradients are averaged, then the absolute value taken;
- `integrated_gradients`: Sundararajan et al. (2017) from an all-black baseline (background in MRI, OCT
  and microscopy alike) in `ig_steps` Gauss-Legendre steps; the official MKD code has it but never used it;
- `guided_backprop`: Springenberg et al. (2015), Captum `GuidedBackprop`, run on a copy of the networks
  whose ReLUs are not in place (torchvision's are, and Captum's hooks fail on them) and whose ReLU6s are a
  ReLU subclass (Captum hooks `nn.ReLU` instances only; EfficientNet-Lite uses ReLU6).

Every attribution is of the score function returning one value per image, shape (N,), never a batch mean,
so images in a batch do not mix. The caller puts the detector in eval mode (BatchNorm statistics frozen).
Memory stays bounded: SmoothGrad and integrated gradients evaluate about `internal_batch_size` noisy or
interpolated images per forward pass (Captum's `internal_batch_size`, and `nt_samples_batch_size` =
`internal_batch_size` // images, since NoiseTunnel's batch counts samples per image).
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from kdmed.config import ATTRIBUTION_METHODS, AttributionConfig
from kdmed.errors import ConfigError


class ScoreModule(nn.Module):
    """The detector's differentiable per-image score as a module (Captum's GuidedBackprop hooks modules)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.detector.detection_scores(x01)


class GuidedReLU6(nn.ReLU):
    """ReLU6 that Captum's guided backpropagation recognises: same forward, an `nn.ReLU` for its hooks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, 6.0)


def guided_backprop_copy(detector: nn.Module) -> ScoreModule:
    """A copy of the detector safe for guided backpropagation; the original is never touched (the app
    shares one loaded model between sessions)."""
    duplicate = copy.deepcopy(detector)
    for parent in duplicate.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, GuidedReLU6())
            elif isinstance(child, nn.ReLU):
                child.inplace = False
    return ScoreModule(duplicate).eval()


def raw_attributions(
    detector: nn.Module, x01: torch.Tensor, config: AttributionConfig, method: str
) -> torch.Tensor:
    """(N, H, W): |attribution| of each image's score to its pixels, summed over channels. `detector` has a
    differentiable `detection_scores(x01) -> (N,)` (MKD's)."""
    if method not in ATTRIBUTION_METHODS:
        raise ConfigError(f"attribution method {method!r} is not one of {', '.join(ATTRIBUTION_METHODS)}.")
    # Captum on first use: a stage that never draws a gradient map starts 0.4 s sooner
    from captum.attr import GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency

    inputs = x01.detach().float().clone().requires_grad_(True)
    score = detector.detection_scores
    batch = config.internal_batch_size
    with torch.enable_grad():
        if method == "saliency":
            attributions = Saliency(score).attribute(inputs, abs=False)
        elif method == "smoothgrad":
            attributions = NoiseTunnel(Saliency(score)).attribute(
                inputs,
                nt_type="smoothgrad",
                nt_samples=config.smoothgrad_samples,
                nt_samples_batch_size=max(1, batch // inputs.shape[0]),
                stdevs=config.smoothgrad_noise,
                abs=False,
            )
        elif method == "integrated_gradients":
            attributions = IntegratedGradients(score).attribute(
                inputs,
                baselines=0.0,
                n_steps=config.ig_steps,
                method="gausslegendre",
                internal_batch_size=batch,
            )
        else:
            with warnings.catch_warnings():  # Captum announces its temporary ReLU hooks on every call
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                attributions = GuidedBackprop(guided_backprop_copy(detector)).attribute(inputs)
    return attributions.detach().abs().sum(dim=1)
