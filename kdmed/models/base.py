"""The one contract every knowledge-distillation detector fulfils.

A detector holds a frozen `teacher` (kept in eval mode here, in one place) and a trainable `student`.
Inputs are float (B, 3, H, W) images in [0, 1]; the detector applies its teacher's input normalisation.
The same calls work in every mode (no `forward` whose return type depends on train/eval):

- `features(x)`  -> (teacher features, student features), dicts of named maps
- `loss(x)`      -> scalar training loss
- `predict(x)`   -> `Prediction(maps (B, H, W), scores (B,))`, higher = more anomalous
- `selection_scores(x)` -> (B,) values whose mean selects the checkpoint on held-out normals (lower is better)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdmed.models.backbones import FeatureExtractor

Features = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    maps: torch.Tensor  # (B, H, W)
    scores: torch.Tensor  # (B,)


class Detector(nn.Module, ABC):
    """Base class: subclasses build `self.teacher` (frozen) and `self.student`, then call `_freeze_teacher`."""

    method: str = ""  # the name in params.yaml, checkpoints and the CLI (`kdmed.models.registry`)
    settings: type  # its frozen settings dataclass (`kdmed.config`); the defaults are the official code's
    teacher: FeatureExtractor

    def __init__(self, architecture: dict[str, Any]):
        super().__init__()
        # Everything needed to rebuild the same network from a checkpoint (JSON-able).
        self.architecture = dict(architecture)

    def _freeze_teacher(self) -> None:
        self.teacher.requires_grad_(False)
        self.teacher.eval()

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        self.teacher.eval()  # the teacher's BatchNorm statistics must never move
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return self.teacher.normalize(x01)

    @abstractmethod
    def features(self, x01: torch.Tensor) -> tuple[Features, Features]:
        """Teacher features (computed without gradient) and student features for the same images."""

    @abstractmethod
    def loss(self, x01: torch.Tensor, teacher_features: Features | None = None) -> torch.Tensor:
        """The method's training loss over the batch (a scalar). `teacher_features`, when given, are the
        teacher's outputs for exactly these images (the training loop may cache them: the teacher is frozen
        and the loop caches only when it does not augment, so they never change)."""

    @abstractmethod
    def predict(self, x01: torch.Tensor) -> Prediction:
        """Anomaly maps at the input's size and image scores."""

    def selection_scores(self, x01: torch.Tensor) -> torch.Tensor:
        """Per-image values used to pick the checkpoint on held-out normals; default: mean of the map."""
        return self.predict(x01).maps.flatten(1).mean(dim=1)

    def teacher_features(self, x01: torch.Tensor) -> Features:
        with torch.no_grad():
            return self.teacher(self.normalize(x01))

    def teacher_feature_bytes(self, height: int, width: int) -> int:
        """Memory for one image's teacher features in float32, from the declared channels and strides."""
        return sum(
            4 * f.channels * -(-height // f.stride) * -(-width // f.stride) for f in self.teacher.feature_info
        )
