"""The closing table of `dvc repro`: metrics per dataset x method, and where models and plots are."""

from __future__ import annotations

import json
from pathlib import Path

from kdmed.config import Params
from kdmed.paths import checkpoint_path, metrics_path
from kdmed.published import BMAD_NOTE, bmad_numbers

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
    """One row per report folder x method: the pipeline's datasets, then the transfers (a model on another
    dataset's test split), then the ensembles."""
    wanted = [
        (dataset, method, params.dataset(dataset).published)
        for dataset in params.pipeline.datasets
        for method in params.pipeline.methods
    ]
    wanted += [(t.report, t.method, "") for t in params.transfers.values()]
    wanted += [(name, "ensemble", "") for name in params.pipeline.ensembles]
    rows = []
    for report, method, published in wanted:
        path = metrics_path(params, report, method)
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        rows.append(
            {"dataset": report, "method": method, "metrics": metrics, "path": path, "published": published}
        )
    return rows


def _with_interval(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if low is None or high is None:
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _published(values) -> str:
    if values is None:
        return "-"
    return " / ".join("-" if v is None else f"{v:.1f}" for v in values)


def markdown_table(params: Params) -> str:
    """The results table for the README: metrics with their 95 % patient-bootstrap intervals (where the
    test split has enough patients) beside BMAD's published numbers."""
    lines = [
        "| dataset | method | teacher | image AUROC | pixel AUROC | AUPRO@0.3 | sens / spec at threshold "
        "| test normal / anomalous | BMAD image / pixel / PRO |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary_rows(params):
        m = row["metrics"]
        if not m:
            lines.append(f"| {row['dataset']} | {row['method']} | not evaluated yet | | | | | | |")
            continue
        published = row["published"]
        sens_spec = f"{_with_interval(m, 'test_sensitivity')} / {_with_interval(m, 'test_specificity')}"
        counts = f"{m.get('test_normal', '?')} / {m.get('test_anomalous', '?')}"
        lines.append(
            f"| {row['dataset']} | {row['method']} | {m.get('backbone', '?')} | {_with_interval(m, 'image_auroc')} "
            f"| {_with_interval(m, 'pixel_auroc')} | {_with_interval(m, 'aupro_0.3')} | {sens_spec} | {counts} "
            f"| {_published(bmad_numbers(published, row['method']))} |"
        )
    return "\n".join(lines) + "\n\n" + BMAD_NOTE + "\n"


def print_summary(params: Params, markdown: bool = False) -> None:
    if markdown:
        print(markdown_table(params))
        if params.localize.datasets:
            from kdmed.localize.table import localize_table

            print(localize_table(params))
        return
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
        f"reports: {Path(params.evaluate.out_dir)}/<dataset>/<method>/ "
        "(metrics.json, roc.csv, pr.csv, histogram.csv, scores.csv, panel.png)"
    )
    print("plots:   `dvc plots show` writes dvc_plots/index.html; `dvc metrics show` prints every metric")
