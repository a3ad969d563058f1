"""The stage sections of params.yaml (everything but the methods, see `kdmed.config_methods`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kdmed.augment import AUGMENTATIONS
from kdmed.config_methods import ATTRIBUTION_METHODS
from kdmed.config_schema import require


@dataclass(frozen=True)
class CommonConfig:
    """Settings shared by every stage."""

    seed: int = 0
    image_size: int = 128
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision, used only on CUDA
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default
    runtime: Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-bf16"] = (
        "torch"  # where evaluate scores on the CPU (kdmed.runtimes)
    )

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
    # each domain's settings, checked against its spec (kdmed.data.demo) by `kdmed.data.demo_params`
    # when the demo is generated: the config layer does not import the data layer
    brain: dict[str, Any] = field(default_factory=dict)
    oct: dict[str, Any] = field(default_factory=dict)
    wbc: dict[str, Any] = field(default_factory=dict)


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
    # this dataset's input size and training length, when they differ from common.image_size and
    # train.steps (0 = those): fine cell detail needs more pixels than a brain slice
    image_size: int = 0
    train_steps: int = 0
    # 2D images: keep the central fraction of each side before resizing (1 = all). For crops centred on
    # one object (a white cell in WBC and PBC crops), the object then fills more of the model's input and
    # less of it is background; serving replays it from the checkpoint, and the review shows that view
    center_crop: float = 1.0

    def __post_init__(self) -> None:
        require(self.slice_axis in (0, 1, 2), "slice_axis", self.slice_axis, "0, 1 or 2")
        require(
            self.image_size == 0 or (32 <= self.image_size <= 1024 and self.image_size % 32 == 0),
            "image_size",
            self.image_size,
            "0 (common.image_size) or a multiple of 32 in [32, 1024]",
        )
        require(self.train_steps >= 0, "train_steps", self.train_steps, "0 (train.steps) or a positive count")
        require(0.25 <= self.center_crop <= 1.0, "center_crop", self.center_crop, "a fraction in [0.25, 1]")
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
    # SmoothGrad samples and integrated-gradients steps in this comparison; 0 = the MKD checkpoint's own
    # (`methods.mkd.attribution`, the paper's 50); the demo uses fewer, for time
    samples: int = 0
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
        require(self.samples >= 0, "localize.samples", self.samples, ">= 0 (0 = the checkpoint's)")
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
