"""The operating point: a score threshold chosen on validation data only, stored in the checkpoint.

Default rule: the threshold that keeps a target specificity on the validation normals. Rule 'f1': the
F1-optimal threshold when labelled validation anomalies exist (falls back to specificity otherwise).
Scores are also reported normalised, `normalized_score`, so that 0.5 is the threshold.
"""

from __future__ import annotations

import math

import numpy as np

from kdmed.errors import DatasetError


def specificity_threshold(normal_scores: np.ndarray, target_specificity: float) -> float:
    """Smallest score t with at least `target_specificity` of the normals at or below t (flag: score > t)."""
    scores = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if scores.size == 0:
        raise DatasetError("cannot calibrate a threshold: the validation split has no normal image.")
    k = max(0, math.ceil(target_specificity * scores.size) - 1)
    return float(scores[k])


def f1_threshold(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """The threshold t maximising F1 of the rule score > t over the validation images."""
    scores = np.concatenate([normal_scores, anomaly_scores]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))])
    best, best_t = -1.0, float(np.max(normal_scores))
    for t in np.unique(scores):
        flagged = scores > t
        tp = float(np.sum(flagged & (labels == 1)))
        f1 = 2 * tp / (flagged.sum() + labels.sum()) if flagged.any() else 0.0
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t


def calibrate(
    normal_scores: np.ndarray, anomaly_scores: np.ndarray, rule: str, target_specificity: float
) -> dict:
    """Threshold and score statistics for the checkpoint header (JSON-able)."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    anomaly_scores = np.asarray(anomaly_scores, dtype=np.float64)
    used = rule
    if rule == "f1" and anomaly_scores.size > 0:
        threshold = f1_threshold(normal_scores, anomaly_scores)
    else:
        used = "specificity"
        threshold = specificity_threshold(normal_scores, target_specificity)
    scale = float(np.std(normal_scores)) or 1e-12
    return {
        "rule": used,
        "target_specificity": target_specificity,
        "threshold": threshold,
        "scale": scale,
        "validation_normals": int(normal_scores.size),
        "validation_anomalies": int(anomaly_scores.size),
        "normal_mean": float(np.mean(normal_scores)),
        "normal_std": float(np.std(normal_scores)),
        "normal_quantiles": {str(q): float(np.quantile(normal_scores, q)) for q in (0.5, 0.9, 0.95, 0.99)},
        "validation_specificity": float(np.mean(normal_scores <= threshold)),
        "validation_sensitivity": float(np.mean(anomaly_scores > threshold)) if anomaly_scores.size else None,
    }


def normalized_score(scores: np.ndarray, calibration: dict) -> np.ndarray:
    """Logistic rescaling with 0.5 at the threshold and the normals' spread as unit (monotone)."""
    z = (np.asarray(scores, dtype=np.float64) - calibration["threshold"]) / calibration["scale"]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
