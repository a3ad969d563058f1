"""The operating point: a score threshold chosen on validation data only, stored in the checkpoint.

Default rule: the threshold that keeps a target specificity on the validation normals. Rule 'f1': the
F1-optimal threshold when labelled validation anomalies exist (falls back to specificity otherwise). Both
use the one tie rule of `kdmed.rules` (flag iff score > threshold). The same validation normals give the
normal map level (`map_floor`) that floors every heat-map scale. Scores are also reported normalised,
`normalized_score`, so that 0.5 is the threshold.
"""

from __future__ import annotations

import numpy as np

from kdmed import rules
from kdmed.contract import Calibration
from kdmed.errors import DatasetError
from kdmed.metrics.image import f1_max


def specificity_threshold(normal_scores: np.ndarray, target_specificity: float) -> float:
    """Smallest observed normal score t with at least `target_specificity` of the normals at or below t."""
    if np.asarray(normal_scores).size == 0:
        raise DatasetError("cannot calibrate a threshold: the validation split has no normal image.")
    return rules.specificity_threshold(normal_scores, target_specificity)


def f1_threshold(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """The threshold t maximising F1 of the rule score > t over the validation images."""
    scores = np.concatenate([normal_scores, anomaly_scores]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))])
    return f1_max(labels, scores).threshold


def calibrate(
    normal_scores: np.ndarray,
    anomaly_scores: np.ndarray,
    rule: str,
    target_specificity: float,
    normal_maps: np.ndarray | None = None,
    map_floor_quantile: float = 0.95,
) -> Calibration:
    """Threshold, score statistics and the normal map level, from validation data only."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    anomaly_scores = np.asarray(anomaly_scores, dtype=np.float64)
    used = rule
    if rule == "f1" and anomaly_scores.size > 0:
        threshold = f1_threshold(normal_scores, anomaly_scores)
    else:
        used = "specificity"
        threshold = specificity_threshold(normal_scores, target_specificity)
    maps = np.zeros((0, 1, 1)) if normal_maps is None else np.asarray(normal_maps)
    return Calibration(
        rule=used,
        target_specificity=float(target_specificity),
        threshold=float(threshold),
        scale=float(np.std(normal_scores)) or 1e-12,
        map_floor=rules.normal_peak(maps, map_floor_quantile),
        map_floor_quantile=float(map_floor_quantile),
        validation_normals=int(normal_scores.size),
        validation_anomalies=int(anomaly_scores.size),
        normal_mean=float(np.mean(normal_scores)),
        normal_std=float(np.std(normal_scores)),
        normal_quantiles={str(q): float(np.quantile(normal_scores, q)) for q in (0.5, 0.9, 0.95, 0.99)},
        validation_specificity=float(np.mean(~rules.flag(normal_scores, threshold))),
        validation_sensitivity=(
            float(np.mean(rules.flag(anomaly_scores, threshold))) if anomaly_scores.size else None
        ),
    )


def normalized_score(scores, calibration: Calibration) -> np.ndarray:
    """Logistic rescaling with 0.5 at the threshold and the normals' spread as unit (monotone); NaN stays
    NaN."""
    z = (np.asarray(scores, dtype=np.float64) - calibration.threshold) / calibration.scale
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
