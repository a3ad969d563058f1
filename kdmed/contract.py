"""The serving contract: everything a checkpoint promises about how its verdicts are made.

Training writes it once, at calibration; the evaluate stage, `kdmed score`, the app, the review records and
the localize stage read its attributes, never a free dict. It is stored as JSON in the checkpoint header
and read back through `kdmed.config_schema.build`, so an unknown key, a missing key or a wrong type is an
error that names the key (`kdmed.checkpoint` turns it into a `CheckpointError` that says how to retrain).

What it fixes, so that `metrics.json` describes what a reader sees:
- `Preprocessing`: the exact transform replayed on uploads (percentiles, crop, image size, channels);
- `SlicePolicy`: which slices of a volume the model was trained and evaluated on (index range and
  minimum foreground); serving scores only those and shows the others as outside the trained range;
- `Calibration`: the threshold (flag iff score > threshold, `kdmed.rules`), the normals' score
  statistics and the normal map level (`map_floor`) that floors every heat-map scale;
- `StudyAggregation`: how slice scores become one study score (`kdmed.rules.aggregate_study`);
- `InputProfile`: what the training inputs looked like, for the out-of-distribution guard (`kdmed.ood`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["volume", "image"]
Aggregation = Literal["max", "topk_mean"]

# Slice status words shown by the app and written by `kdmed score` (one place, one spelling).
SCORED = "scored"
OUTSIDE_RANGE = "outside the trained range"
LITTLE_TISSUE = "too little tissue"


@dataclass(frozen=True)
class ModelCard:
    """What the model is and where it came from."""

    method: str
    backbone: str
    dataset: str
    teacher_weights: str
    trained_at: str
    kdmed_version: str = "unknown"
    torch_version: str = "unknown"
    git_revision: str = "unknown"
    train_data_sha256: str = "unknown"

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}"


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing replayed on every upload (`kdmed.data.transforms`)."""

    image_size: int
    channels: int
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    crop_foreground: bool = True
    crop_margin: int = 4
    normalization: Literal["percentile", "robust"] = "percentile"
    robust_iqr_multiple: float = 6.0
    resample_mm: float = 0.0
    stain_normalization: Literal["none", "reinhard"] = "none"
    center_crop: float = 1.0  # 2D images: the central fraction of each side kept before resizing


@dataclass(frozen=True)
class SlicePolicy:
    """The slices of a volume a model is trained, evaluated and served on: index in [first, last) along
    `axis` (last None = to the end) with at least `min_foreground_pixels` foreground pixels. Serving cannot
    see lesion masks, so the policy never depends on them (preprocessing applies it to every split)."""

    axis: int = 2
    first: int = 0
    last: int | None = None
    min_foreground_pixels: int = 0

    def status(self, index: int, foreground_pixels: int) -> str:
        """SCORED, OUTSIDE_RANGE or LITTLE_TISSUE for slice `index` with that much foreground."""
        if index < self.first or (self.last is not None and index >= self.last):
            return OUTSIDE_RANGE
        if foreground_pixels < self.min_foreground_pixels:
            return LITTLE_TISSUE
        return SCORED

    def describe(self) -> str:
        last = "the last slice" if self.last is None else f"{self.last - 1}"
        return (
            f"slices {self.first} to {last} along axis {self.axis} with at least "
            f"{self.min_foreground_pixels} foreground pixels"
        )


@dataclass(frozen=True)
class Calibration:
    """The operating point, chosen on validation data only (`kdmed.calibration.calibrate`)."""

    rule: Literal["specificity", "sensitivity", "f1"]
    target_specificity: float
    threshold: float
    scale: float  # the normals' score spread: the unit of the normalised score
    map_floor: float  # the map level normal slices reach: the floor of every heat-map scale
    map_floor_quantile: float = 0.95
    validation_normals: int = 0
    validation_anomalies: int = 0
    normal_mean: float = 0.0
    normal_std: float = 0.0
    normal_quantiles: dict[str, float] = field(default_factory=dict)
    validation_specificity: float | None = None
    validation_sensitivity: float | None = None
    target_sensitivity: float | None = None  # rule "sensitivity"
    validation_normal_patients: int = 0
    validation_anomaly_patients: int = 0

    def operating_point(self) -> str:
        """The operating point in words, for the app, the PDF and the JSON."""
        normals = f"{self.validation_normals} validation normal images of {self.validation_normal_patients} patient(s)"
        anomalies = (
            f"{self.validation_anomalies} validation anomalous images of "
            f"{self.validation_anomaly_patients} patient(s)"
        )
        if self.rule == "sensitivity":
            return (
                f"target sensitivity {100 * (self.target_sensitivity or 0):.0f} % on {anomalies} "
                f"(validation specificity {_pct(self.validation_specificity)} on {normals})"
            )
        if self.rule == "f1":
            return f"best F1 on {anomalies} and {normals}"
        return f"target specificity {100 * self.target_specificity:.0f} % on {normals}" + (
            f" (validation sensitivity {_pct(self.validation_sensitivity)})"
            if self.validation_anomalies
            else ""
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


@dataclass(frozen=True)
class InputProfile:
    """What the training inputs looked like, for the out-of-distribution guard (`kdmed.ood`): the mean
    and spread of the teacher's pooled features over training normals, the distance above which a study
    is out of distribution (calibrated on validation normals), and the validation range of simple image
    statistics (mean intensity, intensity spread, foreground fraction, colour)."""

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    threshold: float
    distance_quantiles: dict[str, float] = field(default_factory=dict)
    statistic_low: dict[str, float] = field(default_factory=dict)
    statistic_high: dict[str, float] = field(default_factory=dict)
    statistic_median: dict[str, float] = field(default_factory=dict)
    train_images: int = 0
    validation_images: int = 0
    slices_per_study: int = 16


@dataclass(frozen=True)
class StudyAggregation:
    """Slice scores -> one study score: the maximum, or the mean of the `top_k` highest."""

    how: Aggregation = "max"
    top_k: int = 3


@dataclass(frozen=True)
class ServingContract:
    """How a model turns a study into a verdict; identical in the evaluate stage and in serving."""

    kind: Kind
    preprocessing: Preprocessing
    calibration: Calibration
    aggregation: StudyAggregation
    slice_policy: SlicePolicy | None = None  # volumes only
    input_profile: InputProfile | None = None  # None: trained before the out-of-distribution guard

    @property
    def threshold(self) -> float:
        return self.calibration.threshold


@dataclass(frozen=True)
class TrainingRecord:
    epochs: int = 0
    steps: int = 0
    best_epoch: int = 0
    best_val_selection: float | None = None
    train_images: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    amp: str = "off"
    augment: tuple[str, ...] = ()  # kdmed.augment transforms used in training (empty: none)
    processes: int = 1  # torchrun data-parallel ranks (kdmed.distributed); the global batch is the same


@dataclass(frozen=True)
class CheckpointHeader:
    """Everything in a checkpoint besides its weights."""

    card: ModelCard
    serving: ServingContract
    architecture: dict[str, Any]  # what `registry.rebuild_detector` needs
    method_config: dict[str, Any] = field(default_factory=dict)
    dataset_config: dict[str, Any] = field(default_factory=dict)
    training: TrainingRecord = field(default_factory=TrainingRecord)

    @property
    def method(self) -> str:
        return self.card.method

    @property
    def kind(self) -> Kind:
        return self.serving.kind

    @property
    def calibration(self) -> Calibration:
        return self.serving.calibration

    @property
    def threshold(self) -> float:
        return self.serving.calibration.threshold
