"""The metric groups the stages report (evaluate, transfer, ensemble, localize), with their patient-level
intervals: each stage calls these, so a number means the same in every metrics.json.

Slices of one patient are not independent, so intervals resample patients (`kdmed.metrics.bootstrap`),
and only when the test split has at least MIN_PATIENTS_FOR_INTERVALS of them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from kdmed import rules
from kdmed.contract import StudyAggregation
from kdmed.metrics._checks import DegenerateSampleError, MetricInputError
from kdmed.metrics.bootstrap import bootstrap, pixel_bootstrap
from kdmed.metrics.pixel import aupro, pixel_auroc
from kdmed.metrics.summary import summarize

MIN_PATIENTS_FOR_INTERVALS = 5


class MaskedSplit(Protocol):
    """What `pixel_metrics` reads of a test split (`kdmed.data.slices.SliceSet` fits)."""

    labels: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray
    patients: np.ndarray


def image_metrics(labels: np.ndarray, scores: np.ndarray, patients: np.ndarray, specificity: float) -> dict:
    """Every image-level metric; 95 % patient-bootstrap intervals when there are enough patients (slices
    of one patient are not independent, so a resample of slices would understate the uncertainty)."""
    n_patients = len(set(patients.tolist()))
    if n_patients >= MIN_PATIENTS_FOR_INTERVALS:
        try:
            return {
                **summarize(labels, scores, patients, specificity=specificity),
                "intervals": "patient bootstrap",
            }
        except (DegenerateSampleError, MetricInputError) as error:
            reason = f"patient bootstrap undefined: {error}"
    else:
        reason = f"only {n_patients} test patient(s): no patient-level interval"
    return {**summarize(labels, scores, specificity=specificity), "intervals": reason}


def operating_point_metrics(
    labels: np.ndarray, scores: np.ndarray, patients: np.ndarray, threshold: float
) -> dict:
    """Sensitivity and specificity of the test split at the stored threshold, with 95 % patient-bootstrap
    intervals when there are at least MIN_PATIENTS_FOR_INTERVALS test patients."""
    flagged = rules.flag(scores, threshold)
    out = {
        "test_sensitivity": float(flagged[labels == 1].mean()),
        "test_specificity": float((~flagged[labels == 0]).mean()),
    }
    if len(set(patients.tolist())) < MIN_PATIENTS_FOR_INTERVALS:
        return out

    def sensitivity(y, s):
        if not (y == 1).any():
            raise DegenerateSampleError("no anomalous image in this resample")
        return float(rules.flag(s[y == 1], threshold).mean())

    def specificity(y, s):
        if not (y == 0).any():
            raise DegenerateSampleError("no normal image in this resample")
        return float((~rules.flag(s[y == 0], threshold)).mean())

    for name, fn in (("test_sensitivity", sensitivity), ("test_specificity", specificity)):
        try:
            result = bootstrap(fn, labels, scores, groups=patients)
        except (DegenerateSampleError, MetricInputError):
            continue
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = result.interval
    return out


def study_scores(patients: np.ndarray, labels: np.ndarray, scores: np.ndarray, aggregation: StudyAggregation):
    """Per-patient (study) score by the checkpoint's aggregation (`kdmed.rules.aggregate_study`, the one
    serving uses); a study is anomalous if any slice is."""
    names = sorted(set(patients.tolist()))
    out_scores, out_labels = [], []
    for name in names:
        member = patients == name
        out_scores.append(rules.aggregate_study(scores[member], aggregation))
        out_labels.append(int(labels[member].max()))
    return names, np.array(out_labels), np.array(out_scores)


def pixel_metrics(test: MaskedSplit, maps: np.ndarray) -> dict:
    """Pixel AUROC and AUPRO over normal images and anomalies that have a pixel mask, with patient-bootstrap
    intervals when there are enough patients."""
    usable = (test.labels == 0) | test.has_mask
    has_region = bool(test.masks[usable].any())
    if not has_region:
        return {"pixel_auroc": None, "aupro_0.3": None, "pixel_images": int(usable.sum())}
    out = {
        "pixel_auroc": pixel_auroc(maps[usable], test.masks[usable]),
        "aupro_0.3": aupro(maps[usable], test.masks[usable], fpr_limit=0.3),
        "pixel_images": int(usable.sum()),
    }
    patients = test.patients[usable]
    if len(set(patients.tolist())) >= MIN_PATIENTS_FOR_INTERVALS:
        try:
            intervals = pixel_bootstrap(maps[usable], test.masks[usable], patients, fpr_limit=0.3)
        except (DegenerateSampleError, MetricInputError):
            return out
        for name, key in (("pixel_auroc", "pixel_auroc"), ("aupro", "aupro_0.3")):
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = intervals[name].interval
    return out


def rounded(obj):
    """Floats (also inside dicts) to 6 decimals, for metrics files that diff cleanly."""
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    return obj
