"""Out-of-distribution guard: does a study look like the data the model was trained on?

A knowledge-distillation detector answers "how unlike the training normals is this?", and it answers it
for any input, including inputs from another scanner, another organ or a synthetic demo: its verdict on
those is meaningless, and silent. The guard measures how far a study lies from the training inputs
before anyone reads the verdict (issue 18), in two ways:

- **Teacher features.** The frozen ImageNet teacher's feature maps, average-pooled per channel over each
  layer the method uses and concatenated (D values per image). Training stores their mean and spread over
  the training normals; an image's distance is the root mean square of its per-channel z-scores (a
  diagonal Mahalanobis distance; the spread is floored at 1 % of the median spread so that near-constant
  channels cannot dominate). Global pooling dilutes a local lesion but keeps what changes everywhere:
  contrast, texture, anatomy, scanner.
- **Image statistics** of the model input: mean intensity, intensity spread, foreground fraction and
  colour (mean absolute difference between channels), each with its range over the training and
  validation normals (0.5th to 99.5th percentile).

A volume's distance and statistics are the medians over up to `slices_per_study` scored slices spread
evenly through it (robust to the lesion slices a study should be flagged for); a 2D image is its own
value. The study is out of distribution when its distance exceeds the threshold (the 99th percentile of
the validation normals' distances times `THRESHOLD_MARGIN`), or when a statistic leaves its range
widened by `RANGE_MARGIN` of its width on each side. Either way the reader is told which, with the
numbers; the verdict is still shown, under the warning.

Chosen on validation data only. Measured rates on real data: README, "Out-of-distribution guard".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from kdmed.contract import InputProfile

__all__ = [
    "RANGE_MARGIN",
    "THRESHOLD_MARGIN",
    "THRESHOLD_QUANTILE",
    "OodCheck",
    "check_study",
    "feature_distances",
    "fit_profile",
    "image_statistics",
    "sample_evenly",
]

THRESHOLD_QUANTILE = 0.99
THRESHOLD_MARGIN = 1.25
RANGE_MARGIN = 0.25
SPREAD_FLOOR = 0.01
FOREGROUND_LEVEL = 10  # uint8 input level above which a pixel counts as foreground

STATISTICS = {
    "mean_intensity": "mean intensity",
    "intensity_spread": "intensity spread",
    "foreground_fraction": "foreground fraction",
    "colour": "colour (channel difference)",
}


@dataclass(frozen=True)
class OodCheck:
    """The guard's answer for one study. `available` False: the checkpoint has no training-input profile
    (trained before the guard existed) or nothing was scored; `warn` True: the study lies outside what
    the model was trained on; `message` is the sentence shown to a reader (app, PDF, JSON)."""

    available: bool
    warn: bool
    distance: float | None = None
    threshold: float | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    message: str = ""
    slices_checked: int = 0

    def to_dict(self) -> dict:
        return asdict(self) | {"reasons": list(self.reasons)}


def image_statistics(inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics of uint8 model inputs (N, C, S, S): each an (N,) array in [0, 1]."""
    x = np.asarray(inputs, dtype=np.float32) / 255.0
    grey = x.mean(axis=1)
    colour = (
        np.abs(x - x.mean(axis=1, keepdims=True)).mean(axis=(1, 2, 3)) if x.shape[1] > 1 else np.zeros(len(x))
    )
    return {
        "mean_intensity": grey.mean(axis=(1, 2)),
        "intensity_spread": grey.std(axis=(1, 2)),
        "foreground_fraction": (grey > FOREGROUND_LEVEL / 255.0).mean(axis=(1, 2)),
        "colour": colour,
    }


def _spread(std: np.ndarray) -> np.ndarray:
    std = np.asarray(std, dtype=np.float64)
    return np.maximum(std, SPREAD_FLOOR * float(np.median(std)) + 1e-12)


def feature_distances(features: np.ndarray, mean, std) -> np.ndarray:
    """(N,) root-mean-square per-channel z-scores of pooled features (N, D) against the training ones."""
    z = (np.asarray(features, dtype=np.float64) - np.asarray(mean)) / _spread(np.asarray(std))
    return np.sqrt(np.mean(z**2, axis=1))


def fit_profile(
    train_features: np.ndarray,
    train_inputs: np.ndarray,
    validation_features: np.ndarray,
    validation_inputs: np.ndarray,
    slices_per_study: int = 16,
) -> InputProfile:
    """The profile training stores: feature mean and spread from the training normals' pooled features,
    the distance threshold from the validation normals only (held out from the mean and spread), and the
    statistic ranges from training and validation normals together (a description of every normal input
    the model saw: validation alone holds too few patients for the spread between patients)."""
    train_features = np.asarray(train_features, dtype=np.float64)
    if len(train_features) < 2 or len(validation_features) < 1:
        raise ValueError(
            f"the input profile needs at least 2 training and 1 validation normal images, got "
            f"{len(train_features)} and {len(validation_features)}"
        )
    mean, std = train_features.mean(axis=0), train_features.std(axis=0)
    distances = feature_distances(validation_features, mean, std)
    stats = image_statistics(np.concatenate([np.asarray(train_inputs), np.asarray(validation_inputs)]))
    low, high, median = {}, {}, {}
    for name, values in stats.items():
        lo, hi = np.quantile(values, [0.005, 0.995])
        width = max(hi - lo, 0.02)  # a statistic that never varies still gets a usable range
        low[name], high[name] = float(lo - RANGE_MARGIN * width), float(hi + RANGE_MARGIN * width)
        median[name] = float(np.median(values))
    return InputProfile(
        feature_mean=tuple(float(v) for v in mean),
        feature_std=tuple(float(v) for v in std),
        threshold=float(np.quantile(distances, THRESHOLD_QUANTILE) * THRESHOLD_MARGIN),
        distance_quantiles={str(q): float(np.quantile(distances, q)) for q in (0.5, 0.9, 0.99, 1.0)},
        statistic_low=low,
        statistic_high=high,
        statistic_median=median,
        train_images=int(len(train_inputs)),
        validation_images=int(len(distances)),
        slices_per_study=int(slices_per_study),
    )


def sample_evenly(count: int, most: int) -> np.ndarray:
    """Up to `most` indices spread evenly over range(count), first and last included."""
    if count <= most:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, most).round().astype(int))


def check_study(profile: InputProfile | None, features: np.ndarray, inputs: np.ndarray) -> OodCheck:
    """The guard's answer for a study's sampled scored inputs: pooled teacher features (n, D) and the uint8
    model inputs (n, C, S, S) they came from."""
    if profile is None:
        return OodCheck(
            available=False,
            warn=False,
            message="The input check could not run: this model was trained before kdmed stored a "
            "training-input profile (retrain it, or run `kdmed profile-inputs` on it).",
        )
    if len(features) == 0:
        return OodCheck(
            available=False, warn=False, message="The input check could not run: no slice was scored."
        )
    if len(profile.feature_mean) != np.asarray(features).shape[1]:
        raise ValueError(
            f"pooled features have {np.asarray(features).shape[1]} values, the profile {len(profile.feature_mean)}"
        )
    distance = float(np.median(feature_distances(features, profile.feature_mean, profile.feature_std)))
    reasons = []
    if distance > profile.threshold:
        reasons.append(
            f"its image features lie {distance / profile.threshold:.1f}x the calibrated limit away from the "
            f"training images (distance {distance:.3g}, limit {profile.threshold:.3g})"
        )
    for name, values in image_statistics(inputs).items():
        if name not in profile.statistic_low:
            continue
        value, low, high = float(np.median(values)), profile.statistic_low[name], profile.statistic_high[name]
        if not low <= value <= high:
            reasons.append(
                f"its {STATISTICS[name]} {value:.3f} is outside the training range {max(low, 0):.3f}-{high:.3f}"
            )
    warn = bool(reasons)
    message = (
        "This study differs from the data this model was trained on: "
        + "; ".join(reasons)
        + ". The verdict may not mean what it says: check that this model fits this kind of study."
        if warn
        else f"This study resembles the model's training data (feature distance {distance:.3g}, "
        f"limit {profile.threshold:.3g})."
    )
    return OodCheck(
        available=True,
        warn=warn,
        distance=distance,
        threshold=float(profile.threshold),
        reasons=tuple(reasons),
        message=message,
        slices_checked=int(len(features)),
    )
