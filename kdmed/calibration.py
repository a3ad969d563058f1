"""The operating point: a score threshold chosen on validation data only, stored in the checkpoint.

Default rule: the threshold that keeps a target specificity on the validation normals. Rule
'sensitivity': the highest threshold that flags a target share of the validation anomalies (a screening
operating point); rule 'f1': the F1-optimal threshold. Both need labelled validation anomalies and fall
back to the specificity rule without them. Both
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
    target_sensitivity: float = 0.9,
    normal_patients: np.ndarray | None = None,
    anomaly_patients: np.ndarray | None = None,
) -> Calibration:
    """Threshold, score statistics and the normal map level, from validation data only. Rules needing
    validation anomalies ("sensitivity", "f1") fall back to the specificity rule when there are none."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    anomaly_scores = np.asarray(anomaly_scores, dtype=np.float64)
    used = rule
    if rule == "f1" and anomaly_scores.size > 0:
        threshold = f1_threshold(normal_scores, anomaly_scores)
    elif rule == "sensitivity" and anomaly_scores.size > 0:
        threshold = rules.sensitivity_threshold(anomaly_scores, target_sensitivity)
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
        target_sensitivity=float(target_sensitivity) if used == "sensitivity" else None,
        validation_normal_patients=_count(normal_patients, normal_scores.size),
        validation_anomaly_patients=_count(anomaly_patients, anomaly_scores.size),
    )


def _count(patients: np.ndarray | None, images: int) -> int:
    """Distinct patients (each image its own patient when not given)."""
    return images if patients is None else len(set(np.asarray(patients).tolist()))


def normalized_score(scores, calibration: Calibration) -> np.ndarray:
    """Logistic rescaling with 0.5 at the threshold and the normals' spread as unit (monotone); NaN stays
    NaN."""
    z = (np.asarray(scores, dtype=np.float64) - calibration.threshold) / calibration.scale
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
