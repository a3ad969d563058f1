"""The method sections of params.yaml: STPM, RD4AD and MKD with their optimisers; defaults are the
papers' official code's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kdmed.config_schema import require

ATTRIBUTION_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "guided_backprop")


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["sgd", "adam"]
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        require(self.lr > 0, "optimizer.lr", self.lr, "a positive learning rate")
        require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "0 <= momentum < 1")
        require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, ">= 0")


@dataclass(frozen=True)
class StpmConfig:
    """STPM (Wang et al., BMVC 2021); defaults are the official code's."""

    backbone: str = "resnet18"
    weights: str = "imagenet"  # "imagenet", "random" (speed tests only) or a path to a .pth state dict
    strides: tuple[int, ...] = (4, 8, 16)  # tap the deepest layer at each stride (ResNet: layer1..3)
    layers: tuple[str, ...] = ()  # explicit layer names; overrides `strides` when given
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(name="sgd", lr=0.4, momentum=0.9, weight_decay=1e-4)
    )
    batch_size: int = 32
    loss_scale: Literal["official", "anomalib"] = "official"

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "stpm.batch_size", self.batch_size, ">= 1")
        require(len(self.strides) >= 1, "stpm.strides", self.strides, "at least one stride")


def _check_taps(section: str, strides: tuple[int, ...], layers: tuple[str, ...]) -> None:
    require(
        len(strides) >= 1 and all(s >= 1 and s & (s - 1) == 0 for s in strides),
        f"{section}.strides",
        strides,
        "one or more powers of two (the strides of the tapped teacher layers)",
    )
    require(len(set(layers)) == len(layers), f"{section}.layers", layers, "distinct layer names")


@dataclass(frozen=True)
class Rd4adConfig:
    """RD4AD (Deng and Li, CVPR 2022); defaults are the official code's (see `kdmed.models.rd4ad`)."""

    backbone: str = "wide_resnet50_2"
    weights: str = "imagenet"
    strides: tuple[int, ...] = (4, 8, 16)  # encoder layers tapped (Wide-ResNet: layer1..3)
    layers: tuple[str, ...] = ()  # explicit layer names; overrides `strides` when given
    # Bottleneck and decoder blocks; "auto": the official Wide-ResNet-50-2 design (bottleneck blocks,
    # inner width 0.5 x output, [3] + [3, 4, 6]) for wide_resnet50_2, the official ResNet-18 design
    # (basic blocks, [2] + [2, 2, 2]) for every other teacher.
    block: Literal["auto", "bottleneck", "basic"] = "auto"
    embedding_blocks: int = 0  # 0: by `block` (3 bottleneck / 2 basic)
    decoder_blocks: tuple[int, ...] = ()  # deepest stage first; (): by `block` ([3, 4, 6] / [2, 2, 2])
    width_ratio: float = 0.5  # bottleneck inner width / output channels (0.5 = Wide-ResNet)
    loss: Literal["flattened", "per_position"] = "flattened"  # official code / the paper's Eq. 2
    map_combine: Literal["sum", "product"] = "sum"
    blur_sigma: float = 4.0
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(name="adam", lr=0.005, betas=(0.5, 0.999))
    )
    batch_size: int = 16

    def __post_init__(self) -> None:
        _check_taps("rd4ad", self.strides, self.layers)
        require(self.batch_size >= 1, "rd4ad.batch_size", self.batch_size, ">= 1")
        require(self.embedding_blocks >= 0, "rd4ad.embedding_blocks", self.embedding_blocks, ">= 0")
        require(
            all(b >= 1 for b in self.decoder_blocks), "rd4ad.decoder_blocks", self.decoder_blocks, ">= 1 each"
        )
        require(0 < self.width_ratio <= 4, "rd4ad.width_ratio", self.width_ratio, "0 < ratio <= 4")
        require(self.blur_sigma >= 0, "rd4ad.blur_sigma", self.blur_sigma, ">= 0 (0 disables the blur)")


@dataclass(frozen=True)
class AttributionConfig:
    """How MKD's gradient map is computed (see `kdmed.models.attribution`)."""

    method: str = "saliency"  # one of ATTRIBUTION_METHODS; saliency is the paper's
    smoothgrad_samples: int = 50  # the MKD paper's SmoothGrad sample count
    smoothgrad_noise: float = 0.15  # noise standard deviation on [0, 1] pixels (SmoothGrad's 15 %)
    ig_steps: int = 50  # integrated-gradients steps from the black baseline
    internal_batch_size: int = 16  # images per forward pass inside SmoothGrad and integrated gradients

    def __post_init__(self) -> None:
        require(
            self.method in ATTRIBUTION_METHODS,
            "mkd.attribution.method",
            self.method,
            f"one of {', '.join(ATTRIBUTION_METHODS)}",
        )
        for key in ("smoothgrad_samples", "ig_steps", "internal_batch_size"):
            require(getattr(self, key) >= 1, f"mkd.attribution.{key}", getattr(self, key), ">= 1")
        require(self.smoothgrad_noise > 0, "mkd.attribution.smoothgrad_noise", self.smoothgrad_noise, "> 0")


@dataclass(frozen=True)
class MkdConfig:
    """MKD (Salehi et al., CVPR 2021); defaults are the official code's (see `kdmed.models.mkd`)."""

    backbone: str = "vgg16"
    weights: str = "imagenet"
    strides: tuple[int, ...] = (4, 8, 16, 32)  # the critical points (VGG-16: pool2..pool5)
    layers: tuple[str, ...] = ()  # explicit layer names; overrides `strides` when given
    scoring_layers: int = 3  # the deepest N critical points give the detection score (pool3..pool5)
    cloner_width: int = 16  # width of the cloner's thin convolutions
    mse_weight: float = 0.01  # lambda (0.5 for MVTec in the official configs)
    lambda_on: Literal["mse", "direction"] = "mse"  # official code / the paper's Eq. 3
    score_direction_only: bool = False
    input_normalization: Literal["none", "backbone"] = "none"  # official: raw [0, 1] pixels
    map: Literal["gradient", "discrepancy"] = "gradient"
    blur_sigma: float = 4.0
    opening: bool = True  # 3x3 elliptical grey opening after the blur (gradient maps)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=0.001))
    batch_size: int = 64

    def __post_init__(self) -> None:
        _check_taps("mkd", self.strides, self.layers)
        taps = len(self.layers) or len(self.strides)
        require(
            1 <= self.scoring_layers <= taps,
            "mkd.scoring_layers",
            self.scoring_layers,
            f"between 1 and the number of critical points ({taps})",
        )
        require(self.cloner_width >= 1, "mkd.cloner_width", self.cloner_width, ">= 1")
        require(self.mse_weight >= 0, "mkd.mse_weight", self.mse_weight, ">= 0")
        require(self.batch_size >= 1, "mkd.batch_size", self.batch_size, ">= 1")
        require(self.blur_sigma >= 0, "mkd.blur_sigma", self.blur_sigma, ">= 0 (0 disables the blur)")


@dataclass(frozen=True)
class MethodsConfig:
    stpm: StpmConfig = field(default_factory=StpmConfig)
    rd4ad: Rd4adConfig = field(default_factory=Rd4adConfig)
    mkd: MkdConfig = field(default_factory=MkdConfig)
