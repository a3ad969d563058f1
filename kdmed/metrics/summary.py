"""One call for every image-level metric, with patient-level intervals when groups are given."""

from __future__ import annotations

from typing import Any

from kdmed.metrics._checks import as_groups, as_labels
from kdmed.metrics.bootstrap import bootstrap
from kdmed.metrics.image import average_precision, f1_max, image_auroc, sensitivity_at_specificity


def summarize(
    labels: Any,
    scores: Any,
    groups: Any = None,
    *,
    specificity: float = 0.95,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Flat dict of floats (ready for a DVC metrics file).

    Keys: n_images, n_anomalous, image_auroc, average_precision, f1_max, f1_threshold, specificity_target,
    sensitivity_at_specificity, sensitivity_threshold; with groups also n_groups and ``<metric>_ci_low`` /
    ``<metric>_ci_high`` for the four metrics (the same group resamples for all four, same seed).
    """
    y = as_labels(labels)
    f1, f1_threshold = f1_max(y, scores)
    sensitivity, sens_threshold = sensitivity_at_specificity(y, scores, specificity)
    out = {
        "n_images": float(y.size),
        "n_anomalous": float(y.sum()),
        "image_auroc": image_auroc(y, scores),
        "average_precision": average_precision(y, scores),
        "f1_max": f1,
        "f1_threshold": f1_threshold,
        "specificity_target": float(specificity),
        "sensitivity_at_specificity": sensitivity,
        "sensitivity_threshold": sens_threshold,
    }
    if groups is None:
        return out
    metrics = {
        "image_auroc": image_auroc,
        "average_precision": average_precision,
        "f1_max": lambda a, b: f1_max(a, b).f1,
        "sensitivity_at_specificity": lambda a, b: sensitivity_at_specificity(a, b, specificity).sensitivity,
    }
    for name, fn in metrics.items():
        result = bootstrap(fn, y, scores, groups=groups, n_boot=n_boot, alpha=alpha, seed=seed)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = result.interval
    out["n_groups"] = float(as_groups(groups, y.size)[1])
    return out
