"""The closing table of `dvc repro`: metrics per dataset x method, and where models and plots are."""

from __future__ import annotations

import json
from pathlib import Path

from kdmed.config import Params
from kdmed.train import checkpoint_path

COLUMNS = (
    ("image_auroc", "image AUROC"),
    ("pixel_auroc", "pixel AUROC"),
    ("aupro_0.3", "AUPRO@0.3"),
    ("test_sensitivity", "sens@thr"),
    ("test_specificity", "spec@thr"),
)


def _cell(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def summary_rows(params: Params) -> list[dict]:
    rows = []
    for dataset in params.pipeline.datasets:
        for method in params.pipeline.methods:
            path = Path(params.evaluate.out_dir) / dataset / method / "metrics.json"
            metrics = json.loads(path.read_text()) if path.is_file() else {}
            rows.append({"dataset": dataset, "method": method, "metrics": metrics, "path": path})
    return rows


def print_summary(params: Params) -> None:
    rows = summary_rows(params)
    header = f"{'dataset':<10}{'method':<8}{'backbone':<20}" + "".join(f"{t:>13}" for _, t in COLUMNS)
    print(header)
    print("-" * len(header))
    for row in rows:
        m = row["metrics"]
        if not m:
            print(f"{row['dataset']:<10}{row['method']:<8}(not evaluated yet: run `dvc repro`)")
            continue
        print(
            f"{row['dataset']:<10}{row['method']:<8}{m.get('backbone', '?'):<20}"
            + "".join(f"{_cell(m.get(key)):>13}" for key, _ in COLUMNS)
        )
    print("\nvalues in percent; thresholds calibrated on validation normals only (see metrics.json)")
    print(
        f"models:  {Path(params.train.out_dir)}/<dataset>/<method>/model.safetensors "
        f"(e.g. {checkpoint_path(params, rows[0]['dataset'], rows[0]['method'])})"
    )
    print(
        f"reports: {Path(params.evaluate.out_dir)}/<dataset>/<method>/ (metrics.json, roc.csv, scores.csv, panel.png)"
    )
    print("plots:   `dvc plots show` writes dvc_plots/index.html; `dvc metrics show` prints every metric")
