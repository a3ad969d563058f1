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
from kdmed.contract import Calibration
from kdmed.data.arrays import to_model_input
from kdmed.data.slices import SliceSet, load_split
from kdmed.errors import ConfigError
from kdmed.inference import predict_images
from kdmed.metrics import image_auroc
from kdmed.metrics.curves import histogram_rows, pr_points, roc_points
from kdmed.metrics.reported import (
    image_metrics,
    operating_point_metrics,
    pixel_metrics,
    rounded,
    study_scores,
)
from kdmed.paths import checkpoint_path, report_dir
from kdmed.runtime import amp_dtype, configure_threads, resolve_device
from kdmed.runtimes import with_runtime


def check_transfer_inputs(checkpoint, test: SliceSet, dataset: str, center_crop: float) -> None:
    """A model scores another dataset's test split only when that split was prepared as the model's own
    inputs were (size, channels, central crop); anything else would be a wrong answer, not a transfer
    result."""
    preprocessing = checkpoint.serving.preprocessing
    if center_crop != preprocessing.center_crop:
        raise ConfigError(
            f"model '{checkpoint.header.card.name}' was trained on the central {preprocessing.center_crop:g} "
            f"of each image, but '{dataset}' is preprocessed with center_crop {center_crop:g}; set "
            f"datasets.{dataset}.center_crop: {preprocessing.center_crop:g}."
        )
    expected = (preprocessing.channels, preprocessing.image_size, preprocessing.image_size)
    if tuple(test.images.shape[1:]) != expected:
        raise ConfigError(
            f"model '{checkpoint.header.card.name}' takes (channels, height, width) {expected}, but the test split of "
            f"'{dataset}' holds {tuple(test.images.shape[1:])}; preprocess both datasets with the same "
            "common.image_size and a matching number of channels."
        )


def _calibration_images(params: Params, dataset: str):
    """Validation normals as float model inputs, for INT8 calibration (`common.runtime: onnx-int8`)."""
    if params.common.runtime != "onnx-int8":
        return None
    normals = load_split(params.preprocess.out_dir, dataset, "val").normals().images[:64]
    return to_model_input(normals).numpy()


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
    path = checkpoint_path(params, model_dataset, method)
    checkpoint = load_checkpoint(path, device)
    if device.type == "cpu":
        checkpoint = with_runtime(
            checkpoint, params.common.runtime, path, calibration=_calibration_images(params, model_dataset)
        )
    threshold = checkpoint.threshold  # fixed before the test split is read
    test = load_split(params.preprocess.out_dir, dataset, "test")
    if model_dataset != dataset:
        check_transfer_inputs(checkpoint, test, dataset, params.dataset(dataset).center_crop)
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
        metrics.update(study_metrics(test, result.scores, serving))
    out_dir = report_dir(params, report_name or dataset, method)
    atomic.write_json(out_dir / "metrics.json", rounded(metrics))
    write_score_tables(out_dir, test, result.scores, serving.calibration, flagged)
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


def study_metrics(test: SliceSet, scores: np.ndarray, serving) -> dict:
    """Volumes: the study-level AUROC under the checkpoint's aggregation and slice policy."""
    _, study_labels, study_values = study_scores(test.patients, test.labels, scores, serving.aggregation)
    both = 0 < study_labels.sum() < study_labels.size
    return {
        "study_auroc": image_auroc(study_labels, study_values) if both else None,
        "studies": int(study_labels.size),
        "study_aggregation": f"{serving.aggregation.how} (top_k {serving.aggregation.top_k})",
        "slice_policy": serving.slice_policy.describe(),
    }


def write_score_tables(
    out_dir: Path, test: SliceSet, scores: np.ndarray, calibration: Calibration, flagged: np.ndarray
) -> None:
    """roc.csv, pr.csv and histogram.csv (the DVC plots) and scores.csv (one row per test image)."""
    atomic.write_csv(out_dir / "roc.csv", roc_points(test.labels, scores))
    atomic.write_csv(out_dir / "pr.csv", pr_points(test.labels, scores))
    atomic.write_csv(out_dir / "histogram.csv", histogram_rows(test.labels, scores))
    columns = zip(
        test.names,
        test.patients,
        test.labels,
        scores,
        normalized_score(scores, calibration),
        flagged,
        strict=False,
    )
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
            for n, p, y, s, z, f in columns
        ],
    )


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
