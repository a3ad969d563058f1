"""The DVC pipeline end to end on a tiny configuration, in a scratch copy of the project.

Runs the real `dvc repro` (demo data -> preprocess -> train -> evaluate -> localize), then checks that a second
`dvc repro` is a no-op, that changing one evaluate parameter re-runs only the evaluate stages, and that
`dvc metrics show` / `dvc plots show` / `kdmed summary` work on the result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATASETS = ("brain", "oct", "wbc")
METHODS = ("stpm", "rd4ad", "mkd")

TINY = {
    "common": {"image_size": 64},
    "demo_data": {
        "brain": {"normal_cases": 3, "abnormal_cases": 4, "shape": [64, 64, 40]},
        "oct": {
            "train_normal": 16,
            "valid_normal": 4,
            "valid_abnormal": 4,
            "test_normal": 6,
            "test_abnormal": 6,
            "height": 128,
            "width": 192,
        },
        "wbc": {"normal": 24, "abnormal": 10, "size": 120},
    },
    "datasets": {
        "brain": {
            "slice_range": [8, 32],
            "min_foreground_pixels": 200,
            "split": {"train": 0.4, "val": 0.2, "test": 0.4},
        }
    },
    "methods": {
        "stpm": {"batch_size": 8},
        "rd4ad": {"batch_size": 8},
        "mkd": {"batch_size": 8, "attribution": {"smoothgrad_samples": 2, "ig_steps": 2}},
    },
    "train": {"epochs": 2, "steps": 0},
    "localize": {"max_images": 8, "batch_size": 4},
}


def merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.mark.slow
def test_dvc_pipeline_end_to_end(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(REPO / "kdmed", project / "kdmed", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)

    first = run(["dvc", "repro"], project)
    for stage in ("demo_data", "preprocess@brain", "train@oct-rd4ad", "evaluate@wbc-mkd", "localize@brain"):
        assert f"'{stage}'" in first, f"stage {stage} did not run"
    for dataset in DATASETS:
        for method in METHODS:
            reports = project / "reports" / dataset / method
            metrics = json.loads((reports / "metrics.json").read_text())
            assert 0.0 <= metrics["image_auroc"] <= 1.0
            assert (project / "models" / dataset / method / "model.safetensors").is_file()
            assert (reports / "panel.png").stat().st_size > 1000
    for method in METHODS:
        assert (
            json.loads((project / f"reports/brain/{method}/metrics.json").read_text())["pixel_auroc"]
            is not None
        )

    for dataset in DATASETS:
        localized = json.loads((project / f"reports/{dataset}/localize/metrics.json").read_text())
        assert len(localized["maps"]) == 7 and localized["images"] == 8
        assert (project / f"reports/{dataset}/localize/panel.png").stat().st_size > 1000

    assert "Running stage" not in run(["dvc", "repro"], project), "a second dvc repro must be a no-op"

    params["evaluate"]["panel_images"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status"], project)
    changed = {
        line.strip().rstrip(":")
        for line in status.splitlines()
        if line and not line.startswith("\t") and line.strip().endswith(":") and "@" in line
    }
    assert changed == {f"evaluate@{d}-{m}" for d in DATASETS for m in METHODS}, status

    shown = run(["dvc", "metrics", "show"], project)
    assert "image_auroc" in shown
    run(["kdmed", "plots-template"], project)
    run(["dvc", "plots", "show", "-o", "plots_html"], project)
    page = (project / "plots_html" / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page and "vegaEmbed" in page, "the plots page must render offline"
    summary = run(["kdmed", "summary"], project)
    assert "image AUROC" in summary and "models:" in summary
