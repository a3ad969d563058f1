"""The `ensemble` stage: the three methods' test scores combined into one, an option measured against
each method alone (README: improvements).

Each method's raw score is first put on a common scale with its own stored calibration: its margin over
its stored threshold in units of its validation normals' spread, z = (score - threshold) / scale (the
logit of `kdmed.calibration.normalized_score`). The ensemble score is the mean z; it flags an image when
the mean is above 0. Both the scale and the threshold come from validation data only, so the ensemble's
operating point is fixed before the test split is read, like every single method's.

Reads `<evaluate.out_dir>/<name>/<method>/scores.csv` (written by `evaluate` or `transfer`) and the
checkpoint headers; writes `<evaluate.out_dir>/<name>/ensemble/metrics.json` and `scores.csv`. Image-level
only: the methods' maps are not combined.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kdmed import atomic, rules
from kdmed.checkpoint import read_header
from kdmed.config import Params
from kdmed.errors import ConfigError
from kdmed.metrics import image_auroc
from kdmed.metrics.reported import image_metrics, operating_point_metrics, rounded
from kdmed.paths import checkpoint_path, report_dir, scores_path


def read_scores(path: Path) -> dict[str, np.ndarray]:
    """One evaluate `scores.csv` as columns: name, patient, label, score."""
    if not path.is_file():
        raise ConfigError(f"'{path}' does not exist; run the evaluate (or transfer) stage for it first.")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ConfigError(f"'{path}' holds no test image; re-run the stage that wrote it.")
    return {
        "name": np.array([r["name"] for r in rows]),
        "patient": np.array([r["patient"] for r in rows]),
        "label": np.array([int(r["label"]) for r in rows]),
        "score": np.array([float(r["score"]) for r in rows]),
    }


def margins(scores: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """(score - threshold) / scale: the margin over the stored threshold in normal-spread units."""
    return (np.asarray(scores, dtype=np.float64) - threshold) / scale


def combine(columns: dict[str, dict[str, np.ndarray]], calibrations: dict[str, tuple[float, float]]):
    """The mean margin over methods, after checking that every method scored the same images in the same
    order with the same labels. Returns (reference columns, per-method margins, ensemble score)."""
    methods = list(columns)
    first = columns[methods[0]]
    for method in methods[1:]:
        other = columns[method]
        if not (
            np.array_equal(first["name"], other["name"]) and np.array_equal(first["label"], other["label"])
        ):
            raise ConfigError(
                f"the test scores of '{methods[0]}' and '{method}' list different images or labels; "
                "re-run their evaluate stages on the same preprocessed test split."
            )
    per_method = {m: margins(columns[m]["score"], *calibrations[m]) for m in methods}
    return first, per_method, np.mean(np.stack(list(per_method.values())), axis=0)


def ensemble_stage(params: Params, name: str) -> dict:
    """Combine `pipeline.methods` on report folder `name` (a dataset or a transfer)."""
    model_dataset = next((t.model for t in params.transfers.values() if t.report == name), name)
    methods = list(params.pipeline.methods)
    if len(methods) < 2:
        raise ConfigError(f"an ensemble needs at least two methods in pipeline.methods; got {methods}.")
    out_dir = report_dir(params, name, "ensemble")
    columns, calibrations = {}, {}
    for method in methods:
        columns[method] = read_scores(scores_path(params, name, method))
        calibration = read_header(checkpoint_path(params, model_dataset, method)).serving.calibration
        calibrations[method] = (calibration.threshold, calibration.scale)
    reference, per_method, score = combine(columns, calibrations)
    labels, patients = reference["label"], reference["patient"]
    metrics = {
        "name": name,
        "methods": "+".join(methods),
        "backbone": "ensemble",
        "combination": "mean of (score - stored threshold) / stored normal spread; flagged above 0",
        "test_images": int(labels.size),
        "test_normal": int((labels == 0).sum()),
        "test_anomalous": int((labels == 1).sum()),
        **image_metrics(labels, score, patients, params.train.target_specificity),
        **operating_point_metrics(labels, score, patients, 0.0),
        **{f"image_auroc_{m}": image_auroc(labels, per_method[m]) for m in methods},
    }
    atomic.write_json(out_dir / "metrics.json", rounded(metrics))
    atomic.write_csv(
        out_dir / "scores.csv",
        [
            {"name": n, "patient": p, "label": int(y), "score": float(s), "flagged": int(f)}
            for n, p, y, s, f in zip(
                reference["name"], patients, labels, score, rules.flag(score, 0.0), strict=True
            )
        ],
    )
    return metrics
