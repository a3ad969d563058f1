"""The README results table comes from `kdmed summary --markdown`: metrics, intervals, published numbers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kdmed.config import load_params
from kdmed.summary import markdown_table

REPO = Path(__file__).resolve().parents[1]


def test_markdown_table_shows_intervals_and_bmad_numbers(tmp_path):
    data = yaml.safe_load((REPO / "real" / "params.yaml").read_text())
    data["evaluate"]["out_dir"] = str(tmp_path / "reports")
    data["pipeline"]["methods"] = ["rd4ad"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    params = load_params(path)
    metrics = {
        "backbone": "efficientnet_lite0",
        "image_auroc": 0.9123,
        "image_auroc_ci_low": 0.85,
        "image_auroc_ci_high": 0.95,
        "pixel_auroc": 0.97,
        "aupro_0.3": None,
        "test_sensitivity": 0.8,
        "test_specificity": 0.9,
        "test_normal": 19,
        "test_anomalous": 71,
    }
    out = tmp_path / "reports" / "brats" / "rd4ad"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps(metrics))
    table = markdown_table(params).splitlines()
    brats = next(line for line in table if line.startswith("| brats | rd4ad"))
    assert "91.2 [85.0, 95.0]" in brats and "| 97.0 |" in brats and "| - |" in brats
    assert "89.5 / 96.5 / 85.9" in brats  # BMAD RD4AD on BraTS 2021
    assert "80.0 / 90.0" in brats and "19 / 71" in brats
    wbc = next(line for line in table if line.startswith("| wbc | rd4ad"))
    assert "not evaluated yet" in wbc
    # the transfers and the ensembles follow the datasets, without published numbers
    for folder, value in (("pbc_to_wbc/rd4ad", 0.61), ("brats/ensemble", 0.955)):
        out = tmp_path / "reports" / folder
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({**metrics, "image_auroc": value, "backbone": "x"}))
    table = markdown_table(params).splitlines()
    transfer = next(line for line in table if line.startswith("| pbc_to_wbc | rd4ad"))
    assert "| 61.0 [85.0, 95.0] |" in transfer and transfer.endswith("| - |")
    assert next(line for line in table if line.startswith("| brats | ensemble")).count("95.5") == 1
    assert table.index(transfer) > table.index(brats)
