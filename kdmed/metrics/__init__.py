"""Evaluation metrics: pure functions over numpy arrays (see REFERENCE.md, "Metrics, defined once").

Conventions: anomalous = positive class = 1; a sample is called anomalous iff ``score >= threshold``;
maps and masks are (N, H, W) with masks > 0 anomalous; every function validates its inputs and raises
MetricInputError (a ValueError) naming the bad argument, or DegenerateSampleError when the metric is
undefined on well-formed data (one class only, no anomalous region, no negative pixel). Numbers produced by
:func:`aupro_divide_by_last_fpr` are a non-standard public variant and must be labelled as such.

Modules: ``image`` (image AUROC, AP, F1, sensitivity), ``pixel`` (pixel AUROC, AUPRO, mask resizing),
``bootstrap`` (patient-level intervals), ``summary`` (all image metrics at once), ``curves`` (the ROC /
PR / histogram rows for DVC plots, scikit-learn's curves), ``reported`` (the metric groups the stages write).
"""

from kdmed.metrics._checks import DegenerateSampleError, MetricInputError
from kdmed.metrics.bootstrap import BootstrapResult, bootstrap, bootstrap_ci, pixel_bootstrap
from kdmed.metrics.image import (
    F1Max,
    SensitivityAtSpecificity,
    average_precision,
    f1_max,
    image_auroc,
    sensitivity_at_specificity,
)
from kdmed.metrics.pixel import aupro, aupro_divide_by_last_fpr, pixel_auroc, resize_mask_nearest
from kdmed.metrics.summary import summarize

__all__ = [
    "BootstrapResult",
    "DegenerateSampleError",
    "F1Max",
    "MetricInputError",
    "SensitivityAtSpecificity",
    "aupro",
    "aupro_divide_by_last_fpr",
    "average_precision",
    "bootstrap",
    "bootstrap_ci",
    "f1_max",
    "image_auroc",
    "pixel_auroc",
    "pixel_bootstrap",
    "resize_mask_nearest",
    "sensitivity_at_specificity",
    "summarize",
]
