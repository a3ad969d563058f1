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

from kdmed.augment import AUGMENTATIONS
from kdmed.config_schema import build, require, to_plain
from kdmed.data.demo import BrainDemoSpec, DemoSpec, OctDemoSpec, WbcDemoSpec
from kdmed.errors import ConfigError

METHODS = ("stpm", "rd4ad", "mkd")
ATTRIBUTION_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "guided_backprop")


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

    adapter: Literal["brats", "bmad", "oct2017", "wbc", "folders", "class_folders", "ixi"]
    root: str
    extra_roots: tuple[str, ...] = ()  # brats: more case folders indexed with `root` and split together
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
    # class_folders: one folder per class (`<root>/<class>/`, or `<root>/{train,test}/<class>/` when the
    # source has its own train/test folders); the classes named here are normal, every other is anomalous
    normal_class_names: tuple[str, ...] = ()
    # another dataset (a key of `datasets`) whose studies, all of them, form this dataset's test split:
    # cross-site / cross-lab testing (this dataset's own test split is then not used)
    test_from: str = ""
    # 2D images: drop near-duplicates by perceptual hash (DCT pHash, 64 bits) within `dedup_distance` bits;
    # -1 disables. The report lands in summary.json (how many, and how many crossed train and test)
    dedup_distance: int = -1
    # the operating point's rule for this dataset's models ("" = train.calibration_rule)
    calibration_rule: Literal["", "specificity", "sensitivity", "f1"] = ""
    split: SplitConfig = field(default_factory=SplitConfig)
    max_images_per_split: int = 0  # 0 keeps all; otherwise a seeded per-split cap (fast experiments)
    # published numbers to print beside this dataset's results (`kdmed summary --markdown`), see kdmed.published
    published: Literal["", "brats", "oct2017"] = ""

    def __post_init__(self) -> None:
        require(self.slice_axis in (0, 1, 2), "slice_axis", self.slice_axis, "0, 1 or 2")
        if self.slice_range is not None:
            lo, hi = self.slice_range
            require(0 <= lo < hi, "slice_range", self.slice_range, "[first, last) with 0 <= first < last")
        require(self.min_foreground_pixels >= 0, "min_foreground_pixels", self.min_foreground_pixels, ">= 0")
        require(len(self.normal_classes) > 0, "normal_classes", self.normal_classes, "at least one class")
        require(self.max_images_per_split >= 0, "max_images_per_split", self.max_images_per_split, ">= 0")
        require(-1 <= self.dedup_distance <= 32, "dedup_distance", self.dedup_distance, "-1 (off) .. 32 bits")
        if self.adapter == "class_folders":
            require(
                len(self.normal_class_names) > 0,
                "normal_class_names",
                self.normal_class_names,
                "at least one class folder name (class_folders adapter)",
            )


@dataclass(frozen=True)
class PreprocessConfig:
    """Turning studies into model-ready slices; the same settings are replayed when scoring uploads."""

    out_dir: str = "data/processed"
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    crop_foreground: bool = True
    crop_margin: int = 4
    # volumes: "percentile" maps the foreground's lower..upper percentiles to 0..1; "robust" maps the
    # foreground median to 0.5 and robust_iqr_multiple x its interquartile range to 1 (tumour-independent
    # tissue level; serves z-scored and raw volumes alike, README: real data)
    normalization: Literal["percentile", "robust"] = "percentile"
    robust_iqr_multiple: float = 6.0
    resample_mm: float = 0.0  # volumes: resample to this isotropic voxel size first (0 = keep the grid)
    # 2D RGB images: "reinhard" moves each image's colour statistics to one reference (kdmed.data.stain),
    # for microscopy from other labs and stains; "none" keeps the colours
    stain_normalization: Literal["none", "reinhard"] = "none"

    def __post_init__(self) -> None:
        require(
            self.robust_iqr_multiple > 0, "preprocess.robust_iqr_multiple", self.robust_iqr_multiple, "> 0"
        )
        require(self.resample_mm >= 0, "preprocess.resample_mm", self.resample_mm, ">= 0 (0 keeps the grid)")
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
    """How MKD's gradient map is computed (see `kdmed.localize.attributions`)."""

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
    # > 0: this many selection passes spread evenly over the run instead (a tiny dataset has hundreds of
    # one-step epochs, and a pass every few of them costs as much as the training)
    selection_passes: int = 0
    # which weights to keep: the lowest selection value on held-out normals, or the last epoch (what the
    # official RD4AD and MKD scripts save)
    checkpoint: Literal["best_validation", "last"] = "best_validation"
    resume: bool = True
    teacher_cache_mb: int = (
        2048  # keep the frozen teacher's training features in memory up to this size; 0 = off
    )
    # operating point, chosen on the validation split only and stored in the checkpoint
    calibration_rule: Literal["specificity", "sensitivity", "f1"] = "specificity"
    target_specificity: float = 0.95
    target_sensitivity: float = 0.9  # rule "sensitivity": the share of validation anomalies to flag
    # the rest of the serving contract, written into the checkpoint at calibration (kdmed.contract)
    study_aggregation: Literal["max", "topk_mean"] = "max"  # slice scores -> study score
    top_k: int = 3
    map_floor_quantile: float = 0.95  # normal map level: this quantile of validation normals' map maxima
    # training-time augmentation of the normals (kdmed.augment): some of hflip, vflip, rot90, intensity;
    # empty (the official recipes) keeps the teacher-feature cache
    augment: tuple[str, ...] = ()

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
            self.selection_passes >= 0,
            "train.selection_passes",
            self.selection_passes,
            ">= 0 (0 = validate_every)",
        )
        require(self.top_k >= 1, "train.top_k", self.top_k, ">= 1")
        for name in self.augment:
            require(name in AUGMENTATIONS, "train.augment", name, f"one of {', '.join(AUGMENTATIONS)}")
        require(
            0.5 <= self.target_sensitivity <= 1.0,
            "train.target_sensitivity",
            self.target_sensitivity,
            "a sensitivity in [0.5, 1]",
        )
        require(
            0 <= self.map_floor_quantile <= 1,
            "train.map_floor_quantile",
            self.map_floor_quantile,
            "in [0, 1]",
        )
        require(
            self.teacher_cache_mb >= 0, "train.teacher_cache_mb", self.teacher_cache_mb, ">= 0 (0 disables)"
        )


@dataclass(frozen=True)
class EvaluateConfig:
    out_dir: str = "reports"
    panel_images: int = 8


@dataclass(frozen=True)
class LocalizeConfig:
    """The `localize` stage: MKD's attribution maps against the masks, beside the other maps."""

    datasets: tuple[str, ...] = ()  # datasets whose test split has lesion masks
    attributions: tuple[str, ...] = ATTRIBUTION_METHODS
    compare: tuple[str, ...] = ("stpm", "rd4ad")  # other methods whose maps are scored on the same images
    max_images: int = 32  # 0 = the whole test split; else a seeded half-lesion, half-normal subset
    reference_images: int = 16  # validation normals that set the per-study normalisation floor (0: none)
    batch_size: int = 8
    panel_images: int = 4
    seed: int = 0
    out_dir: str = "reports"

    def __post_init__(self) -> None:
        for name in self.attributions:
            require(
                name in ATTRIBUTION_METHODS,
                "localize.attributions",
                name,
                f"one of {', '.join(ATTRIBUTION_METHODS)}",
            )
        for name in self.compare:
            require(name in ("stpm", "rd4ad"), "localize.compare", name, "stpm or rd4ad")
        require(self.max_images >= 0, "localize.max_images", self.max_images, ">= 0 (0 = all)")
        require(self.reference_images >= 0, "localize.reference_images", self.reference_images, ">= 0")
        require(self.batch_size >= 1, "localize.batch_size", self.batch_size, ">= 1")


@dataclass(frozen=True)
class TransferConfig:
    """One model scored on another dataset's test split (`kdmed transfer`): for example a WBC model trained
    in one lab, tested on another lab's cells. Its reports go to
    `<evaluate.out_dir>/<model>_to_<test>/<method>/`."""

    model: str  # the dataset the model was trained on
    test: str  # the dataset whose test split it scores
    method: str

    @property
    def report(self) -> str:
        return f"{self.model}_to_{self.test}"


@dataclass(frozen=True)
class PipelineConfig:
    """The dataset x method matrix that `dvc repro` runs."""

    datasets: tuple[str, ...] = ("brain", "oct", "wbc")
    methods: tuple[str, ...] = ("stpm",)
    # report folders (datasets, or transfers' <model>_to_<test>) whose methods' scores `kdmed ensemble` combines
    ensembles: tuple[str, ...] = ()


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
    # per dataset, per method: settings merged over `methods.<method>` for that dataset only
    method_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    transfers: dict[str, TransferConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.pipeline.datasets:
            require(name in self.datasets, "pipeline.datasets", name, f"one of {sorted(self.datasets)}")
        for name in self.pipeline.methods:
            require(name in self.method_names(), "pipeline.methods", name, f"one of {self.method_names()}")
        for name, dataset in self.datasets.items():
            if dataset.test_from:
                require(
                    dataset.test_from in self.datasets and dataset.test_from != name,
                    f"datasets.{name}.test_from",
                    dataset.test_from,
                    f"another dataset, one of {sorted(set(self.datasets) - {name})}",
                )
        for name, transfer in self.transfers.items():
            for key in ("model", "test"):
                require(
                    getattr(transfer, key) in self.datasets,
                    f"transfers.{name}.{key}",
                    getattr(transfer, key),
                    f"one of {sorted(self.datasets)}",
                )
            require(
                transfer.model != transfer.test,
                f"transfers.{name}.test",
                transfer.test,
                "another dataset than the model's (that is the plain evaluate stage)",
            )
            require(
                transfer.method in self.method_names(),
                f"transfers.{name}.method",
                transfer.method,
                f"one of {self.method_names()}",
            )
        reports = set(self.datasets) | {t.report for t in self.transfers.values()}
        for name in self.pipeline.ensembles:
            require(name in reports, "pipeline.ensembles", name, f"one of {sorted(reports)}")
        for name in self.localize.datasets:
            require(name in self.datasets, "localize.datasets", name, f"one of {sorted(self.datasets)}")
        for dataset, methods in self.method_overrides.items():
            require(dataset in self.datasets, "method_overrides", dataset, f"one of {sorted(self.datasets)}")
            for method in methods:
                require(
                    method in self.method_names(),
                    f"method_overrides.{dataset}",
                    method,
                    f"one of {self.method_names()}",
                )
                self.method(method, dataset)  # validates the merged settings now, naming the key

    @staticmethod
    def method_names() -> list[str]:
        return [f.name for f in dataclasses.fields(MethodsConfig)]

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            raise ConfigError(
                f"params: no dataset '{name}' under 'datasets'; defined: {sorted(self.datasets)}."
            )
        return self.datasets[name]

    def method(self, name: str, dataset: str | None = None) -> Any:
        """The settings of method `name`, with `datasets.<dataset>.method_overrides.<name>` applied."""
        if name not in self.method_names():
            raise ConfigError(f"params: unknown method '{name}'; available: {self.method_names()}.")
        base = getattr(self.methods, name)
        overrides = self.method_overrides.get(dataset, {}).get(name) if dataset is not None else None
        if not overrides:
            return base
        merged = deep_merge(to_plain(base), to_plain(overrides))
        return build(type(base), merged, f"method_overrides.{dataset}.{name}")


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


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
