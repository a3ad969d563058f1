"""The decision rules, each written once and used by calibration, the metrics, the evaluate stage and
serving alike.

- Tie rule: a score is flagged iff it is strictly above the threshold (`flag`). A threshold is therefore
  the highest score still called normal; NaN (a slice not scored) is never flagged.
- Specificity threshold: the k-th lowest normal score, k = ceil(target x n) (`specificity_threshold`), so
  at least the target share of normals is at or below it and, by the tie rule, not flagged.
- Sensitivity threshold: just below the k-th highest anomaly score, k = ceil(target x n)
  (`sensitivity_threshold`): the highest threshold that flags at least the target share of anomalies.
- Study score: the maximum of the scored slices, or the mean of the `top_k` highest (`aggregate_study`).
- Heat-map scale: one divisor per study, its largest map value floored at the normal map level stored in
  the checkpoint (`heat_scale`); the app, `kdmed score` overlays, the PDF, the evaluate panel and the
  localize stage all divide by it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from kdmed.contract import StudyAggregation


def flag(scores, threshold: float) -> np.ndarray:
    """(N,) bool: scores strictly above `threshold`; NaN is never flagged."""
    return np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf) > float(threshold)


def specificity_threshold(normal_scores, target_specificity: float) -> float:
    """The smallest observed normal score t with at least `target_specificity` of the normals <= t."""
    scores = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("cannot set a specificity threshold without normal scores")
    # Round away float noise (0.95 * 20 must give 19, not 20) before taking the ceiling.
    k = max(1, math.ceil(round(float(target_specificity) * scores.size, 9)))
    return float(scores[k - 1])


def sensitivity_threshold(anomaly_scores, target_sensitivity: float) -> float:
    """The highest threshold t that still flags at least `target_sensitivity` of the anomalies (score > t):
    just below the k-th highest anomaly score, k = ceil(target x n)."""
    scores = np.sort(np.asarray(anomaly_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise ValueError("cannot set a sensitivity threshold without anomaly scores")
    k = max(1, math.ceil(round(float(target_sensitivity) * scores.size, 9)))
    return float(np.nextafter(scores[k - 1], -np.inf))


def aggregate_study(scores, aggregation: StudyAggregation) -> float:
    """One study's score from its slice scores (NaN slices ignored); NaN when none was scored."""
    finite = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])[::-1]
    if finite.size == 0:
        return float("nan")
    if aggregation.how == "max":
        return float(finite[0])
    return float(finite[: aggregation.top_k].mean())


def normal_peak(normal_maps, quantile: float = 0.95) -> float:
    """The `quantile` of the per-slice maxima of maps of normal slices: the brightness a normal slice
    reaches (0 when there are none)."""
    maps = np.asarray(normal_maps, dtype=np.float64)
    if maps.size == 0:
        return 0.0
    return float(np.quantile(maps.reshape(len(maps), -1).max(axis=1), quantile))


def heat_scale(maps: Iterable, floor: float) -> float:
    """The divisor for one study's maps: the largest finite value over all its slices, but at least
    `floor` (the normal level), so that a normal study stays dark; 1 when there is nothing to scale."""
    finite = [m[np.isfinite(m)] for m in (np.asarray(x) for x in maps)]
    peak = max((float(v.max()) for v in finite if v.size), default=0.0)
    return max(peak, float(floor)) if max(peak, float(floor)) > 0 else 1.0


def normalize_per_study(maps, studies, floor: float) -> np.ndarray:
    """(N, H, W) maps divided by each study's `heat_scale` (`studies`: one study id per map), in [0, 1]."""
    maps = np.asarray(maps, dtype=np.float32)
    studies = np.asarray(studies)
    if studies.shape != (maps.shape[0],):
        raise ValueError(f"studies must have one id per map: shape {studies.shape}, maps {maps.shape}.")
    out = np.zeros_like(maps)
    for study in np.unique(studies):
        rows = studies == study
        scaled = maps[rows] / heat_scale(maps[rows], floor)
        out[rows] = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return out
