"""STPM: student-teacher feature pyramid matching (Wang, Han, Wu, Tian; BMVC 2021).

Teacher: an ImageNet backbone, frozen in eval mode, tapped at several strides (the paper: ResNet-18
`layer1..layer3`). Student: the same architecture, randomly initialised, trained to reproduce the
teacher's features on normal images (paper Sec. 3.1, Eq. 1-3).

Follows the official code rather than the paper where they differ:
- loss per layer: L2-normalise both maps along channels, squared distance summed over channels, MEAN over
  batch and positions, summed over layers (`loss_scale: official`). anomalib's port multiplies this by
  B/2 (`loss_scale: anomalib`); at the paper's learning rate 0.4 that is a different optimiser step size.
- anomaly map: per layer the same squared distance, bilinearly resized (align_corners False) to the
  finest tapped layer's resolution (64x64 for a 256 input), multiplied element-wise over layers, then
  resized to the input size; no blur; image score = max of the map (Sec. 3.2, Eq. 4-5).
- checkpoint: the epoch with the lowest mean anomaly map on held-out normals (the official 80/20 split of
  training normals; here the validation split, see `kdmed.train`).
Any backbone from `kdmed.models.backbones` can replace ResNet-18 (the offline default is
EfficientNet-Lite0), tapped at the same strides.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kdmed.config import StpmConfig
from kdmed.models.backbones import FeatureExtractor, layers_at_strides
from kdmed.models.base import Detector, Features, Prediction


def layer_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) pair -> (B, h, w): squared distance of the channel-wise L2-normalised features."""
    t = F.normalize(teacher.float(), dim=1)
    s = F.normalize(student.float(), dim=1)
    return (t - s).pow(2).sum(dim=1)


def stpm_loss(teacher: Features, student: Features, scale: str = "official") -> torch.Tensor:
    """Sum over layers of the mean (over batch and positions) normalised squared distance."""
    total = sum(layer_distance(teacher[name], student[name]).mean() for name in teacher)
    if scale == "anomalib":
        batch = next(iter(teacher.values())).shape[0]
        total = total * 0.5 * batch
    return total


def stpm_map(teacher: Features, student: Features, output_size: tuple[int, int]) -> torch.Tensor:
    """Product over layers of the per-layer distance maps at the finest layer's size, then input size."""
    names = list(teacher)
    finest = max((teacher[n].shape[-2:] for n in names), key=lambda s: s[0] * s[1])
    product = None
    for name in names:
        d = layer_distance(teacher[name], student[name])[:, None]
        d = F.interpolate(d, size=tuple(finest), mode="bilinear", align_corners=False)
        product = d if product is None else product * d
    return F.interpolate(product, size=output_size, mode="bilinear", align_corners=False)[:, 0]


class STPM(Detector):
    method = "stpm"
    settings = StpmConfig

    def __init__(self, config: StpmConfig, teacher_weights: str | None = None):
        layers = config.layers or layers_at_strides(config.backbone, config.strides)
        super().__init__(
            {"backbone": config.backbone, "layers": list(layers), "loss_scale": config.loss_scale}
        )
        self.loss_scale = config.loss_scale
        self.teacher = FeatureExtractor(
            config.backbone, layers, weights=teacher_weights or config.weights, frozen=True
        )
        self.student = FeatureExtractor(config.backbone, layers, weights="random")
        self._freeze_teacher()

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any]) -> STPM:
        """Rebuild the network of a checkpoint (weights are loaded afterwards, so no weight file is read)."""
        config = StpmConfig(
            backbone=architecture["backbone"],
            layers=tuple(architecture["layers"]),
            loss_scale=architecture["loss_scale"],
            weights="random",
        )
        return cls(config)

    def features(self, x01: torch.Tensor) -> tuple[Features, Features]:
        x = self.normalize(x01)
        with torch.no_grad():
            teacher = self.teacher(x)
        return teacher, self.student(x)

    def loss(self, x01: torch.Tensor, teacher_features: Features | None = None) -> torch.Tensor:
        if teacher_features is None:
            teacher, student = self.features(x01)
        else:
            teacher, student = teacher_features, self.student(self.normalize(x01))
        return stpm_loss(teacher, student, self.loss_scale)

    def predict(self, x01: torch.Tensor) -> Prediction:
        teacher, student = self.features(x01)
        maps = stpm_map(teacher, student, tuple(x01.shape[-2:]))
        return Prediction(maps=maps, scores=maps.flatten(1).amax(dim=1))
