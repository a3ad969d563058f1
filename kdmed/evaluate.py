"""The `evaluate` stage: score the held-out test split with a trained checkpoint and write DVC metrics/plots.

Writes under `<evaluate.out_dir>/<dataset>/<method>/`: `metrics.json` (image AUROC, average precision,
F1-max, sensitivity at the target specificity, pixel AUROC, AUPRO to FPR 0.3 with the MVTec definition,
patient-level bootstrap intervals when the test split has enough patients, the calibrated threshold and its
test sensitivity/specificity, study-level AUROC for volumes), `roc.csv` and `pr.csv` (the curves),
`histogram.csv` (test scores of normal and anomalous images in shared bins), `scores.csv` (one row per
test image) and `panel.png` (the highest-scoring test images with heat maps and ground-truth contours). The threshold comes from the
checkpoint, fixed on validation data before the test split is read.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kdmed import atomic, rules
from kdmed.calibration import normalized_score
from kdmed.checkpoint import load_checkpoint
from kdmed.config import Params
from kdmed.contract import StudyAggregation
from kdmed.data.slices import SliceSet, load_split
from kdmed.errors import ConfigError
from kdmed.inference import predict_images
from kdmed.metrics import (
    DegenerateSampleError,
    MetricInputError,
    aupro,
    bootstrap,
    image_auroc,
    pixel_auroc,
    pixel_bootstrap,
    summarize,
)
from kdmed.metrics.image import cumulative_counts
from kdmed.runtime import amp_dtype, configure_threads, resolve_device
from kdmed.train import checkpoint_path


def roc_points(labels: np.ndarray, scores: np.ndarray) -> list[dict]:
    """(fpr, tpr, threshold) at every distinct score, anomalous = positive."""
    thresholds, tp, fp = cumulative_counts(np.asarray(labels), np.asarray(scores))
    tpr, fpr = tp / max(int(tp[-1]), 1), fp / max(int(fp[-1]), 1)
    rows = [{"fpr": 0.0, "tpr": 0.0, "threshold": float(thresholds[0]) + 1e-12}]
    rows += [
        {"fpr": float(f), "tpr": float(t), "threshold": float(th)}
        for f, t, th in zip(fpr, tpr, thresholds, strict=True)
    ]
    return rows


def pr_points(labels: np.ndarray, scores: np.ndarray) -> list[dict]:
    """(recall, precision, threshold) at every distinct score, anomalous = positive."""
    thresholds, tp, fp = cumulative_counts(np.asarray(labels), np.asarray(scores))
    recall, precision = tp / max(int(tp[-1]), 1), tp / np.maximum(tp + fp, 1)
    return [
        {"recall": float(r), "precision": float(p), "threshold": float(th)}
        for r, p, th in zip(recall, precision, thresholds, strict=True)
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


MIN_PATIENTS_FOR_INTERVALS = 5


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


def pixel_metrics(test: SliceSet, maps: np.ndarray) -> dict:
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


def check_transfer_inputs(checkpoint, test: SliceSet, dataset: str) -> None:
    """A model scores another dataset's test split only when that split was prepared as the model's own
    inputs were (size and channels); anything else would be a wrong answer, not a transfer result."""
    preprocessing = checkpoint.serving.preprocessing
    expected = (preprocessing.channels, preprocessing.image_size, preprocessing.image_size)
    if tuple(test.images.shape[1:]) != expected:
        raise ConfigError(
            f"model '{checkpoint.header.card.name}' takes (channels, height, width) {expected}, but the test split of "
            f"'{dataset}' holds {tuple(test.images.shape[1:])}; preprocess both datasets with the same "
            "common.image_size and a matching number of channels."
        )


def evaluate_stage(
    params: Params,
    dataset: str,
    method: str,
    model_dataset: str | None = None,
    report_name: str | None = None,
) -> dict:
    """Score the test split of `dataset` with the checkpoint trained on `model_dataset` (default: the same
    dataset) and write the reports under `<evaluate.out_dir>/<report_name or dataset>/<method>/`."""
    configure_threads(params.common.num_threads)
    device = resolve_device(params.common.device)
    model_dataset = model_dataset or dataset
    checkpoint = load_checkpoint(checkpoint_path(params, model_dataset, method), device)
    threshold = checkpoint.threshold  # fixed before the test split is read
    test = load_split(params.preprocess.out_dir, dataset, "test")
    if model_dataset != dataset:
        check_transfer_inputs(checkpoint, test, dataset)
    started = time.perf_counter()
    batch_size = params.method(method, dataset).batch_size
    result = predict_images(
        checkpoint.detector, test.images, batch_size, amp_dtype(device, params.common.amp)
    )
    seconds = time.perf_counter() - started
    flagged = rules.flag(result.scores, threshold)
    serving = checkpoint.serving
    normal, anomalous = test.labels == 0, test.labels == 1
    metrics = {
        "dataset": dataset,
        "model_dataset": model_dataset,
        "method": method,
        "backbone": checkpoint.header.card.backbone,
        "test_images": int(len(test)),
        "test_normal": int(normal.sum()),
        "test_anomalous": int(anomalous.sum()),
        **image_metrics(test.labels, result.scores, test.patients, params.train.target_specificity),
        **pixel_metrics(test, result.maps),
        "aupro_variant": "MVTec: regions over the whole test set, FPR over all negative pixels, divided by 0.3",
        "threshold": threshold,
        "threshold_rule": serving.calibration.rule,
        "map_floor": serving.calibration.map_floor,
        **operating_point_metrics(test.labels, result.scores, test.patients, threshold),
        "operating_point": serving.calibration.operating_point(),
        "seconds_per_image": seconds / max(len(test), 1),
    }
    if serving.kind == "volume":
        _, study_labels, study_values = study_scores(
            test.patients, test.labels, result.scores, serving.aggregation
        )
        both = 0 < study_labels.sum() < study_labels.size
        metrics["study_auroc"] = image_auroc(study_labels, study_values) if both else None
        metrics["studies"] = int(study_labels.size)
        metrics["study_aggregation"] = f"{serving.aggregation.how} (top_k {serving.aggregation.top_k})"
        metrics["slice_policy"] = serving.slice_policy.describe()
    out_dir = Path(params.evaluate.out_dir) / (report_name or dataset) / method
    atomic.write_json(out_dir / "metrics.json", rounded(metrics))
    atomic.write_csv(out_dir / "roc.csv", roc_points(test.labels, result.scores))
    atomic.write_csv(out_dir / "pr.csv", pr_points(test.labels, result.scores))
    atomic.write_csv(out_dir / "histogram.csv", histogram_rows(test.labels, result.scores))
    atomic.write_csv(
        out_dir / "scores.csv",
        [
            {
                "name": n,
                "patient": p,
                "label": int(y),
                "score": float(s),
                "normalized": float(z),
                "flagged": int(f),
            }
            for n, p, y, s, z, f in zip(
                test.names,
                test.patients,
                test.labels,
                result.scores,
                normalized_score(result.scores, serving.calibration),
                flagged,
                strict=False,
            )
        ],
    )
    from kdmed.plots import save_panel  # matplotlib is imported only when a panel is drawn

    save_panel(
        out_dir / "panel.png",
        test,
        result,
        serving.calibration,
        params.evaluate.panel_images,
        title=f"{report_name or dataset} / {method}: highest-scoring test images",
    )
    return metrics


def transfer_stage(params: Params, name: str) -> dict:
    """The `transfer` stage: `transfers.<name>`'s model scored on another dataset's test split."""
    if name not in params.transfers:
        raise ConfigError(
            f"params: no transfer '{name}' under 'transfers'; defined: {sorted(params.transfers)}."
        )
    transfer = params.transfers[name]
    return evaluate_stage(
        params, transfer.test, transfer.method, model_dataset=transfer.model, report_name=transfer.report
    )


def rounded(obj):
    """Floats (also inside dicts) to 6 decimals, for metrics files that diff cleanly."""
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    return obj
