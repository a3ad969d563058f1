"""The curves the evaluate stage writes for `dvc plots`: ROC, precision-recall and score histograms.

Rows of dicts (one per point), anomalous = positive, one point per distinct score (a threshold takes a
whole tie at once), highest threshold first. The curves are scikit-learn's (`roc_curve`,
`precision_recall_curve`, every point kept); the AUROC and average precision in metrics.json are
`kdmed.metrics.image`'s exact pair counts, which equal the areas under these curves (tests check both).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve


def roc_points(labels: np.ndarray, scores: np.ndarray) -> list[dict]:
    """(fpr, tpr, threshold) at every distinct score, starting at (0, 0) just above the highest score
    (scikit-learn's infinite first threshold, made finite for the CSV)."""
    fpr, tpr, thresholds = roc_curve(np.asarray(labels), np.asarray(scores), drop_intermediate=False)
    rows = [{"fpr": 0.0, "tpr": 0.0, "threshold": float(thresholds[1]) + 1e-12}]
    rows += [
        {"fpr": float(f), "tpr": float(t), "threshold": float(th)}
        for f, t, th in zip(fpr[1:], tpr[1:], thresholds[1:], strict=True)
    ]
    return rows


def pr_points(labels: np.ndarray, scores: np.ndarray) -> list[dict]:
    """(recall, precision, threshold) at every distinct score, highest threshold first (scikit-learn's
    closing (recall 0, precision 1) point left out: it belongs to no threshold)."""
    precision, recall, thresholds = precision_recall_curve(
        np.asarray(labels), np.asarray(scores), drop_intermediate=False
    )
    return [
        {"recall": float(r), "precision": float(p), "threshold": float(th)}
        for r, p, th in zip(recall[-2::-1], precision[-2::-1], thresholds[::-1], strict=True)
    ]


def histogram_rows(labels: np.ndarray, scores: np.ndarray, bins: int = 30) -> list[dict]:
    """Counts of normal and anomalous test scores in the same bins (bin centre as x)."""
    edges = np.histogram_bin_edges(scores, bins=bins)
    normal, _ = np.histogram(scores[labels == 0], bins=edges)
    anomalous, _ = np.histogram(scores[labels == 1], bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    return [
        {"score": float(c), "normal": int(n), "anomalous": int(a)}
        for c, n, a in zip(centres, normal, anomalous, strict=True)
    ]
