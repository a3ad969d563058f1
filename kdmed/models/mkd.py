"""MKD: multiresolution knowledge distillation for anomaly detection (Salehi et al., CVPR 2021).

Teacher ("source"): a frozen ImageNet network tapped at its "critical points" (the paper: the VGG-16
max-pool outputs pool2..pool5). Student ("cloner"): a much thinner VGG-like network trained to match both
the value and the direction of the teacher's activations at every critical point (Sec. 3.1-3.2).

Cloner, as in the official code: one block per factor-2 down-sampling up to the deepest critical point;
blocks of 2, 2, 3, 3, 3 convolutions (VGG-16's pattern), each 3x3 with padding 1, no bias, Xavier-uniform
init; all `cloner_width` (16) channels wide except the last of a block whose pool output is a critical
point, which takes the teacher's channel count there; BatchNorm + ReLU after each convolution except the
one right before the pool (ReLU only). With VGG-16 this is exactly the official 0.34 M-parameter cloner
(16,16,M, 16,128,M, 16,16,256,M, 16,16,512,M, 16,16,512,M); any other teacher gets the same design sized
from its declared channels and strides.

Follows the official code rather than the paper where they differ:
- loss: sum over the critical points of [1 - cosine of the flattened maps, mean over the batch] plus
  lambda times the sum of the mean squared errors (`lambda_on: mse`, lambda 0.01). The paper's Eq. 3 puts
  lambda on the direction term (`lambda_on: direction`).
- inputs: raw [0, 1] pixels without ImageNet normalisation (`input_normalization: none`); BMAD used the
  backbone normalisation (`backbone`).
- detection score: the same loss for one image over the deepest three critical points only (pool3..pool5,
  `scoring_layers: 3`); pool2 is used in training only. `score_direction_only` drops the MSE term, as the
  code's `direction_loss_only` switch does.
- anomaly map (`map: gradient`, Sec. 3.3): the gradient of that per-image score with respect to the input
  pixels, through both networks, computed with Captum (`attribution.method`: saliency, the paper's
  default, or smoothgrad, integrated_gradients, guided_backprop; `kdmed.models.attribution`); absolute
  value summed over channels, Gaussian blur sigma 4, 3x3 elliptical grey opening. `map: discrepancy` gives the cheaper per-position
  feature discrepancy (direction + lambda * squared error per position, up-sampled, summed, blurred).
- checkpoint: the official script keeps the last epoch (and evaluates on the test set while training);
  kdmed selects by the mean detection score on held-out normals (`train.checkpoint: last` for the
  official choice).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdmed.config import MkdConfig
from kdmed.config_schema import build, to_plain
from kdmed.errors import ConfigError
from kdmed.models.attribution import raw_attributions
from kdmed.models.backbones import FeatureExtractor, FeatureInfo, layers_at_strides
from kdmed.models.base import Detector, Features, Prediction
from kdmed.models.maps import gaussian_blur, smooth_attributions

VGG16_BLOCK_DEPTHS = (2, 2, 3, 3, 3)
LITE0_CRITICAL_POINTS = ("stage2", "stage3", "stage5", "stage7")
"""MKD's critical points on EfficientNet-Lite0: the last stage at each stride 4..32, as VGG-16's pool2..pool5
are. `layers_at_strides` would pick `head` at stride 32 (the classifier's 1x1 projection, not a stage).
params.yaml spells the same names under `methods.mkd.layers` (tests/test_architecture.py checks they agree)."""


class Cloner(nn.Module):
    """The thin student: its pool outputs at the critical points' strides match the teacher's shapes."""

    def __init__(self, infos: tuple[FeatureInfo, ...], width: int):
        super().__init__()
        by_stride = {info.stride: info for info in infos}
        if len(by_stride) != len(infos) or any(s < 2 or s & (s - 1) for s in by_stride):
            raise ConfigError(
                f"mkd: critical points {[(i.name, i.stride) for i in infos]} need distinct power-of-two "
                "strides >= 2 (one cloner pool per critical point); choose other mkd.layers / mkd.strides."
            )
        self.blocks = nn.ModuleList()
        self.taps: dict[int, str] = {}
        channels = 3
        for index in range(int(math.log2(max(by_stride)))):
            stride = 2 ** (index + 1)
            depth = VGG16_BLOCK_DEPTHS[min(index, len(VGG16_BLOCK_DEPTHS) - 1)]
            tapped = by_stride.get(stride)
            widths = [width] * (depth - 1) + [tapped.channels if tapped else width]
            layers: list[nn.Module] = []
            for position, out in enumerate(widths):
                conv = nn.Conv2d(channels, out, 3, padding=1, bias=False)
                nn.init.xavier_uniform_(conv.weight)
                last = position == len(widths) - 1
                layers += (
                    [conv, nn.ReLU(inplace=True)]
                    if last
                    else [conv, nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                )
                channels = out
            layers.append(nn.MaxPool2d(2, 2))
            self.blocks.append(nn.Sequential(*layers))
            if tapped:
                self.taps[index] = tapped.name

    def forward(self, x: torch.Tensor) -> Features:
        found = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.taps:
                found[self.taps[index]] = x
        return found


def per_sample_terms(teacher: torch.Tensor, student: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) direction term 1 - cos of the flattened maps and (B,) mean squared error, for one critical point."""
    t, s = teacher.float().flatten(1), student.float().flatten(1)
    return 1 - F.cosine_similarity(t, s, dim=1), (s - t).pow(2).mean(dim=1)


def combine_terms(
    direction: torch.Tensor,
    value: torch.Tensor,
    mse_weight: float,
    lambda_on: str = "mse",
    direction_only: bool = False,
) -> torch.Tensor:
    """direction + lambda * value (official code), value + lambda * direction (paper), or direction only."""
    if direction_only:
        return direction
    if lambda_on == "direction":
        return value + mse_weight * direction
    return direction + mse_weight * value


def mkd_per_sample_loss(
    teacher: Features,
    student: Features,
    layers: tuple[str, ...],
    mse_weight: float,
    lambda_on: str = "mse",
    direction_only: bool = False,
) -> torch.Tensor:
    """(B,) loss of each image over `layers`: the official combination (or the paper's, see module doc)."""
    direction, value = 0.0, 0.0
    for name in layers:
        d, v = per_sample_terms(teacher[name], student[name])
        direction, value = direction + d, value + v
    return combine_terms(direction, value, mse_weight, lambda_on, direction_only)


class MKD(Detector):
    method = "mkd"
    settings = MkdConfig

    def __init__(self, config: MkdConfig, teacher_weights: str | None = None):
        layers = config.layers or layers_at_strides(config.backbone, config.strides)
        super().__init__({**to_plain(config), "layers": list(layers)})
        del self.architecture["optimizer"], self.architecture["batch_size"], self.architecture["weights"]
        self.config = config
        self.teacher = FeatureExtractor(
            config.backbone, layers, weights=teacher_weights or config.weights, frozen=True
        )
        self.student = Cloner(self.teacher.feature_info, config.cloner_width)
        self._freeze_teacher()
        self.scoring = tuple(self.teacher.layers[-config.scoring_layers :])

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any]) -> MKD:
        return cls(build(MkdConfig, {**architecture, "weights": "random"}, "architecture"))

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        if self.config.input_normalization == "none":
            return x01
        return self.teacher.normalize(x01)

    def features(self, x01: torch.Tensor) -> tuple[Features, Features]:
        teacher = self.teacher_features(x01)
        return teacher, self.student(self.normalize(x01))

    def loss(self, x01: torch.Tensor, teacher_features: Features | None = None) -> torch.Tensor:
        if teacher_features is None:
            teacher, student = self.features(x01)
        else:
            teacher, student = teacher_features, self.student(self.normalize(x01))
        per_sample = mkd_per_sample_loss(
            teacher, student, self.teacher.layers, self.config.mse_weight, self.config.lambda_on
        )
        return per_sample.mean()

    def detection_scores(self, x01: torch.Tensor) -> torch.Tensor:
        """(B,) per-image scoring loss over the scoring critical points. Differentiable with respect to
        `x01` (no `no_grad` inside): this is the function the gradient maps attribute."""
        x = self.normalize(x01)
        return self._scores(self.teacher(x), self.student(x))

    def _scores(self, teacher: Features, student: Features) -> torch.Tensor:
        c = self.config
        return mkd_per_sample_loss(
            teacher, student, self.scoring, c.mse_weight, c.lambda_on, c.score_direction_only
        )

    def gradient_maps(self, x01: torch.Tensor, method: str | None = None) -> torch.Tensor:
        """|attribution of the score to the input| summed over channels (Captum; `attribution.method` unless
        `method` is given), then the paper's blur and opening. Call in eval mode.

        Always computed in float32, also inside an autocast region: under bf16 autocast the input gradient
        of the Lite0 teacher's score agreed with the float32 map at a Spearman rank correlation of only
        0.64 on an H200 (`python -m kdmed.gpu_check`), while the other maps stayed above 0.99."""
        with torch.autocast(device_type=x01.device.type, enabled=False):
            raw = raw_attributions(
                self, x01.float(), self.config.attribution, method or self.config.attribution.method
            )
            return smooth_attributions(raw, self.config.blur_sigma, self.config.opening)

    def discrepancy_maps(self, x01: torch.Tensor, teacher: Features, student: Features) -> torch.Tensor:
        size = tuple(x01.shape[-2:])
        total = 0.0
        for name in self.scoring:
            t, s = teacher[name].float(), student[name].float()
            direction = 1 - F.cosine_similarity(t, s, dim=1)
            value = (s - t).pow(2).mean(dim=1)
            c = self.config
            per_position = combine_terms(direction, value, c.mse_weight, c.lambda_on, c.score_direction_only)
            total = total + F.interpolate(
                per_position[:, None], size=size, mode="bilinear", align_corners=False
            )
        return gaussian_blur(total[:, 0], self.config.blur_sigma)

    def predict(self, x01: torch.Tensor) -> Prediction:
        with torch.no_grad():
            teacher, student = self.features(x01)
            scores = self._scores(teacher, student)
        if self.config.map == "gradient":
            maps = self.gradient_maps(x01)
        else:
            maps = self.discrepancy_maps(x01, teacher, student)
        return Prediction(maps=maps, scores=scores)

    def selection_scores(self, x01: torch.Tensor) -> torch.Tensor:
        """The detection score itself (no gradient map needed to pick a checkpoint)."""
        with torch.no_grad():
            return self.detection_scores(x01)
