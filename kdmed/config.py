"""params.yaml, loaded into frozen dataclasses: one section per stage plus shared settings.

Every hyper-parameter lives in params.yaml; the defaults below are the papers' settings where a paper
gives one. `load_params` rejects unknown keys, wrong types and impossible values with a `ConfigError`
that names the dotted key (see `kdmed.config_schema`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kdmed.config_schema import build, require
from kdmed.data.demo import BrainDemoSpec, DemoSpec, OctDemoSpec, WbcDemoSpec
from kdmed.errors import ConfigError

METHODS = ("stpm", "rd4ad", "mkd")


@dataclass(frozen=True)
class CommonConfig:
    """Settings shared by every stage."""

    seed: int = 0
    image_size: int = 128
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision, used only on CUDA
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        require(
            32 <= self.image_size <= 1024 and self.image_size % 32 == 0,
            "common.image_size",
            self.image_size,
            "a multiple of 32 between 32 and 1024",
        )
        require(self.num_threads >= 0, "common.num_threads", self.num_threads, "0 (default) or more")


@dataclass(frozen=True)
class DemoDataConfig:
    """The bundled synthetic demo studies (see `kdmed.data.demo`)."""

    out_dir: str = "data/demo"
    seed: int = 0
    brain: BrainDemoSpec = field(default_factory=BrainDemoSpec)
    oct: OctDemoSpec = field(default_factory=OctDemoSpec)
    wbc: WbcDemoSpec = field(default_factory=WbcDemoSpec)

    def spec(self) -> DemoSpec:
        return DemoSpec(seed=self.seed, brain=self.brain, oct=self.oct, wbc=self.wbc)


@dataclass(frozen=True)
class SplitConfig:
    """Patient-level split fractions, used where the dataset layout does not fix the split."""

    train: float = 0.5
    val: float = 0.2
    test: float = 0.3

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            require(0.0 < value < 1.0, f"split.{name}", value, "a fraction strictly between 0 and 1")
        total = self.train + self.val + self.test
        require(abs(total - 1.0) < 1e-6, "split", (self.train, self.val, self.test), "fractions summing to 1")


@dataclass(frozen=True)
class DatasetConfig:
    """Where a dataset lives and how its adapter reads it (see `kdmed.data.adapters`)."""

    adapter: Literal["brats", "bmad", "oct2017", "wbc", "folders"]
    root: str
    # volumes (brats): which sequence, and the BMAD-style slice rules
    modality: str = "flair"
    slice_axis: int = 2
    slice_range: tuple[int, int] | None = None
    min_foreground_pixels: int = 2000
    # wbc: labels CSV ("image ID,class label"), images folder, optional abnormality masks, normal classes
    labels_csv: str = "labels.csv"
    images_dir: str = "images"
    anomaly_masks_dir: str = ""
    normal_classes: tuple[int, ...] = (1,)
    # folders: a normal and an abnormal folder, optional masks folder with the same file names
    normal_dir: str = "normal"
    abnormal_dir: str = "abnormal"
    masks_dir: str = ""
    split: SplitConfig = field(default_factory=SplitConfig)
    max_images_per_split: int = 0  # 0 keeps all; otherwise a seeded per-split cap (fast experiments)

    def __post_init__(self) -> None:
        require(self.slice_axis in (0, 1, 2), "slice_axis", self.slice_axis, "0, 1 or 2")
        if self.slice_range is not None:
            lo, hi = self.slice_range
            require(0 <= lo < hi, "slice_range", self.slice_range, "[first, last) with 0 <= first < last")
        require(self.min_foreground_pixels >= 0, "min_foreground_pixels", self.min_foreground_pixels, ">= 0")
        require(len(self.normal_classes) > 0, "normal_classes", self.normal_classes, "at least one class")
        require(self.max_images_per_split >= 0, "max_images_per_split", self.max_images_per_split, ">= 0")


@dataclass(frozen=True)
class PreprocessConfig:
    """Turning studies into model-ready slices; the same settings are replayed when scoring uploads."""

    out_dir: str = "data/processed"
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    crop_foreground: bool = True
    crop_margin: int = 4

    def __post_init__(self) -> None:
        require(
            0.0 <= self.lower_percentile < self.upper_percentile <= 100.0,
            "preprocess.percentiles",
            (self.lower_percentile, self.upper_percentile),
            "0 <= lower < upper <= 100",
        )
        require(self.crop_margin >= 0, "preprocess.crop_margin", self.crop_margin, ">= 0")


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


@dataclass(frozen=True)
class MethodsConfig:
    stpm: StpmConfig = field(default_factory=StpmConfig)


@dataclass(frozen=True)
class TrainConfig:
    """The one training loop (`kdmed.train`)."""

    epochs: int = 100
    steps: int = (
        0  # > 0: train for this many optimiser steps (rounded up to whole epochs) instead of `epochs`
    )
    max_train_images: int = 0  # 0 trains on every normal training slice
    out_dir: str = "models"
    validate_every: int = 1  # epochs between checkpoint-selection passes on held-out normals
    resume: bool = True
    teacher_cache_mb: int = (
        2048  # keep the frozen teacher's training features in memory up to this size; 0 = off
    )
    # operating point, chosen on the validation split only and stored in the checkpoint
    calibration_rule: Literal["specificity", "f1"] = "specificity"
    target_specificity: float = 0.95

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "train.epochs", self.epochs, ">= 1")
        require(self.steps >= 0, "train.steps", self.steps, "0 (use epochs) or a positive step count")
        require(
            0.5 <= self.target_specificity < 1.0,
            "train.target_specificity",
            self.target_specificity,
            "a specificity in [0.5, 1)",
        )
        require(self.max_train_images >= 0, "train.max_train_images", self.max_train_images, ">= 0")
        require(self.validate_every >= 1, "train.validate_every", self.validate_every, ">= 1")
        require(
            self.teacher_cache_mb >= 0, "train.teacher_cache_mb", self.teacher_cache_mb, ">= 0 (0 disables)"
        )


@dataclass(frozen=True)
class EvaluateConfig:
    out_dir: str = "reports"
    study_aggregation: Literal["max", "topk_mean"] = "max"
    top_k: int = 3
    panel_images: int = 8

    def __post_init__(self) -> None:
        require(self.top_k >= 1, "evaluate.top_k", self.top_k, ">= 1")


@dataclass(frozen=True)
class PipelineConfig:
    """The dataset x method matrix that `dvc repro` runs."""

    datasets: tuple[str, ...] = ("brain", "oct", "wbc")
    methods: tuple[str, ...] = ("stpm",)


@dataclass(frozen=True)
class Params:
    common: CommonConfig
    demo_data: DemoDataConfig
    datasets: dict[str, DatasetConfig]
    preprocess: PreprocessConfig
    methods: MethodsConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    pipeline: PipelineConfig

    def __post_init__(self) -> None:
        for name in self.pipeline.datasets:
            require(name in self.datasets, "pipeline.datasets", name, f"one of {sorted(self.datasets)}")
        for name in self.pipeline.methods:
            require(name in self.method_names(), "pipeline.methods", name, f"one of {self.method_names()}")

    @staticmethod
    def method_names() -> list[str]:
        return [f.name for f in dataclasses.fields(MethodsConfig)]

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            raise ConfigError(
                f"params: no dataset '{name}' under 'datasets'; defined: {sorted(self.datasets)}."
            )
        return self.datasets[name]

    def method(self, name: str) -> Any:
        if name not in self.method_names():
            raise ConfigError(f"params: unknown method '{name}'; available: {self.method_names()}.")
        return getattr(self.methods, name)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"params file '{path}' does not exist; run from the repository root or pass --params."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"params file '{path}' is not valid YAML: {error}") from error
    return build(Params, data, "")
