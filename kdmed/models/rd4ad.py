"""RD4AD: anomaly detection via reverse distillation from a one-class embedding (Deng and Li, CVPR 2022).

Teacher: a frozen ImageNet encoder tapped at three strides (the paper: Wide-ResNet-50-2 `layer1..3`).
Student: the trainable one-class bottleneck embedding (OCBE, Sec. 3.2) followed by a decoder that mirrors
the encoder and reconstructs the teacher's features from the compact embedding ("reverse" distillation).

Network, as in the official code (see ../shared/REFERENCE.md):
- fusion (multi-scale feature fusion): each shallower level goes through stride-2 3x3 convolutions
  (BatchNorm, ReLU) down to the deepest tapped level's resolution; the channel count after each step is the
  one of the tapped level at that stride (Wide-ResNet: 256->512->1024 and 512->1024); concatenated with the
  deepest level (3072 channels at stride 16);
- embedding: one encoder stage (stride 2, 1x1 strided projection shortcut) producing twice the deepest
  level's channels (Wide-ResNet: 3 bottleneck blocks of inner width 1024 -> 2048 x 8 x 8);
- decoder: per tapped level, deepest first, a stage whose first block up-samples with a transposed
  convolution (Wide-ResNet: [3, 4, 6] bottleneck blocks -> 1024, 512, 256 channels).
With `wide_resnet50_2` and `block: auto` these are exactly the paper's sizes (embedding stage 48.3 M,
fusion 10.6 M, decoder 24.9 M parameters, pinned by tests); with `resnet18` they are the official
ResNet-18 variant (basic blocks, [2] + [2, 2, 2]); any other teacher gets the same design sized from its
declared channels and strides.

Follows the official code rather than the paper where they differ:
- loss: per level, 1 - cosine similarity of the FLATTENED (C*H*W) teacher and student maps of each
  sample, mean over the batch, summed over levels (`loss: flattened`). The paper's Eq. 2 averages a
  per-position cosine over positions (`loss: per_position`); users report it trains worse.
- the official bottleneck also defines a 1x1 convolution (`conv4`, 8.4 M parameters) that its forward
  never uses; it is left out here (no effect on any output).
- anomaly map: per level 1 - cosine along channels at each position, bilinear up-sampling with
  align_corners=True to the input size, summed over levels (`map_combine: sum`; the code's "mul" mode is
  `product`), Gaussian blur sigma 4 (SciPy truncation and borders); image score = max of the map.
- checkpoint: the official script keeps the last epoch and reports test metrics during training; kdmed
  never looks at the test split and selects by the mean map on held-out normals (`train.checkpoint:
  last` gives the official choice).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdmed.config import Rd4adConfig
from kdmed.config_schema import build, to_plain
from kdmed.errors import ConfigError, InputSizeError
from kdmed.models.backbones import FeatureExtractor, FeatureInfo, layers_at_strides
from kdmed.models.base import Detector, Features, Prediction
from kdmed.models.maps import gaussian_blur
from kdmed.models.resnet_blocks import conv3x3, decoder_stage, encoder_stage, init_like_official

PAPER_DESIGN = {"bottleneck": (3, (3, 4, 6)), "basic": (2, (2, 2, 2))}


def _steps(ratio: int, what: str) -> int:
    if ratio < 1 or ratio & (ratio - 1):
        raise ConfigError(f"rd4ad: {what} stride ratio {ratio} is not a power of two; tap other layers.")
    return int(math.log2(ratio))


class OneClassBottleneck(nn.Module):
    """Multi-scale feature fusion plus the one-class embedding stage (Sec. 3.2, Fig. 2)."""

    def __init__(self, infos: tuple[FeatureInfo, ...], block: str, blocks: int, width_ratio: float):
        super().__init__()
        deepest = infos[-1]
        by_stride = {info.stride: info.channels for info in infos}
        self.fusion = nn.ModuleList()
        for info in infos[:-1]:
            steps, channels, stride = [], info.channels, info.stride
            for _ in range(_steps(deepest.stride // info.stride, f"{info.name}->{deepest.name}")):
                stride *= 2
                target = by_stride.get(stride, deepest.channels)
                steps += [conv3x3(channels, target, stride=2), nn.BatchNorm2d(target), nn.ReLU(inplace=True)]
                channels = target
            self.fusion.append(nn.Sequential(*steps))
        fused = deepest.channels * len(infos)
        self.out_channels = 2 * deepest.channels
        self.embedding = encoder_stage(block, fused, self.out_channels, blocks, 2, width_ratio)
        init_like_official(self)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        fused = [convs(f) for convs, f in zip(self.fusion, features[:-1], strict=True)]
        return self.embedding(torch.cat([*fused, features[-1]], dim=1)).contiguous()


class ReverseDecoder(nn.Module):
    """Mirrored encoder: one up-sampling stage per tapped level, deepest first (Sec. 3.1)."""

    def __init__(
        self,
        infos: tuple[FeatureInfo, ...],
        in_channels: int,
        block: str,
        blocks: tuple[int, ...],
        width_ratio: float,
    ):
        super().__init__()
        if len(blocks) != len(infos):
            raise ConfigError(
                f"rd4ad.decoder_blocks = {list(blocks)} has {len(blocks)} stages but {len(infos)} layers are "
                "tapped; give one block count per tapped layer, deepest first."
            )
        self.stages = nn.ModuleList()
        channels, stride = in_channels, 2 * infos[-1].stride
        for info, count in zip(reversed(infos), blocks, strict=True):
            factor = 2 ** _steps(stride // info.stride, f"decoder to {info.name}")
            self.stages.append(decoder_stage(block, channels, info.channels, count, factor, width_ratio))
            channels, stride = info.channels, info.stride
        init_like_official(self)

    def forward(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        outputs, x = [], embedding
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs[::-1]  # shallowest first, like the teacher's layers


class ReverseStudent(nn.Module):
    def __init__(
        self, infos: tuple[FeatureInfo, ...], block: str, embedding_blocks: int, decoder_blocks, ratio
    ):
        super().__init__()
        self.bottleneck = OneClassBottleneck(infos, block, embedding_blocks, ratio)
        self.decoder = ReverseDecoder(
            infos, self.bottleneck.out_channels, block, tuple(decoder_blocks), ratio
        )

    def forward(self, teacher: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.decoder(self.bottleneck(teacher))


def rd_loss(teacher: Features, student: Features, form: str = "flattened") -> torch.Tensor:
    """Sum over levels of the batch-mean (1 - cosine): flattened maps (code) or per position (paper)."""
    total = 0.0
    for name in teacher:
        t, s = teacher[name].float(), student[name].float()
        if form == "flattened":
            total = total + (1 - F.cosine_similarity(t.flatten(1), s.flatten(1), dim=1)).mean()
        else:
            total = total + (1 - F.cosine_similarity(t, s, dim=1)).mean()
    return total


def rd_map(
    teacher: Features, student: Features, output_size: tuple[int, int], combine: str, sigma: float
) -> torch.Tensor:
    """Per-level 1 - cosine along channels, up-sampled (align_corners=True), combined, blurred."""
    combined = None
    for name in teacher:
        distance = 1 - F.cosine_similarity(teacher[name].float(), student[name].float(), dim=1)
        distance = F.interpolate(distance[:, None], size=output_size, mode="bilinear", align_corners=True)
        if combined is None:
            combined = distance
        else:
            combined = combined * distance if combine == "product" else combined + distance
    return gaussian_blur(combined[:, 0], sigma)


class RD4AD(Detector):
    method = "rd4ad"
    settings = Rd4adConfig

    def __init__(self, config: Rd4adConfig, teacher_weights: str | None = None):
        layers = config.layers or layers_at_strides(config.backbone, config.strides)
        block = config.block
        if block == "auto":
            block = "bottleneck" if config.backbone == "wide_resnet50_2" else "basic"
        embedding_blocks = config.embedding_blocks or PAPER_DESIGN[block][0]
        decoder_blocks = tuple(config.decoder_blocks) or PAPER_DESIGN[block][1]
        super().__init__(
            {
                **to_plain(config),
                "layers": list(layers),
                "block": block,
                "embedding_blocks": embedding_blocks,
                "decoder_blocks": list(decoder_blocks),
            }
        )
        del self.architecture["optimizer"], self.architecture["batch_size"], self.architecture["weights"]
        self.config = config
        self.teacher = FeatureExtractor(
            config.backbone, layers, weights=teacher_weights or config.weights, frozen=True
        )
        infos = self.teacher.feature_info
        self.student = ReverseStudent(infos, block, embedding_blocks, decoder_blocks, config.width_ratio)
        self._freeze_teacher()
        self.alignment = 2 * infos[-1].stride  # input sizes must be multiples of this

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any]) -> RD4AD:
        return cls(build(Rd4adConfig, {**architecture, "weights": "random"}, "architecture"))

    def _student(self, teacher: Features) -> Features:
        decoded = self.student([teacher[name] for name in self.teacher.layers])
        return dict(zip(self.teacher.layers, decoded, strict=True))

    def _check_size(self, x01: torch.Tensor) -> None:
        height, width = x01.shape[-2:]
        if height % self.alignment or width % self.alignment:
            raise InputSizeError(
                f"RD4AD needs input sides that are multiples of {self.alignment} (twice the deepest tapped "
                f"stride); got {height}x{width}. Resize the images (common.image_size)."
            )

    def features(self, x01: torch.Tensor) -> tuple[Features, Features]:
        self._check_size(x01)
        teacher = self.teacher_features(x01)
        return teacher, self._student(teacher)

    def loss(self, x01: torch.Tensor, teacher_features: Features | None = None) -> torch.Tensor:
        if teacher_features is None:
            teacher, student = self.features(x01)
        else:
            teacher, student = teacher_features, self._student(teacher_features)
        return rd_loss(teacher, student, self.config.loss)

    def predict(self, x01: torch.Tensor) -> Prediction:
        teacher, student = self.features(x01)
        maps = rd_map(
            teacher, student, tuple(x01.shape[-2:]), self.config.map_combine, self.config.blur_sigma
        )
        return Prediction(maps=maps, scores=maps.flatten(1).amax(dim=1))
