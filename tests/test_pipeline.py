"""The DVC pipeline end to end on a tiny configuration, in a scratch copy of the project.

Runs the real `dvc repro` (demo data -> preprocess -> train -> evaluate -> localize), then checks that a second
`dvc repro` is a no-op, that changing one evaluate parameter re-runs only the evaluate stages, and that
`dvc metrics show` / `dvc plots show` / `kdmed summary` work on the result.
"""

from __future__ import annotations

import ast
import csv
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
        },
        # the demo's per-dataset sizes and lengths would make this tiny run long
        "oct": {"image_size": 0, "train_steps": 0},
        "wbc": {"image_size": 0, "train_steps": 0},
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


def auroc_of_scores_csv(reports: Path) -> float:
    """The image AUROC counted pair by pair from the stage's own per-image scores.csv (ties: one half)."""
    with (reports / "scores.csv").open(newline="") as handle:
        rows = [(int(row["label"]), float(row["score"])) for row in csv.DictReader(handle)]
    positives = [s for y, s in rows if y == 1]
    negatives = [s for y, s in rows if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


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
            assert metrics["image_auroc"] == pytest.approx(auroc_of_scores_csv(reports), abs=1e-6)
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


# ----------------------------------------------------------------------------- dvc.yaml lists the code it runs

# Modules left out of the code deps: the version string and the exception types change no output.
NOT_A_DEP = {"kdmed/__init__.py", "kdmed/errors.py"}
STAGE_MODULES = (
    "kdmed.data.preprocess",
    "kdmed.train",
    "kdmed.evaluate",
    "kdmed.ensemble",
    "kdmed.localize.stage",
    "kdmed.summary",
)


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def kdmed_imports(path: Path) -> set[str]:
    """Every kdmed module `path` imports, at module level or inside a function (lazy imports run too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] == "kdmed"}


def closure(entries: set[str]) -> set[str]:
    """Repository paths of the modules that importing `entries` executes (parent packages included)."""
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += kdmed_imports(path)
    return {path.relative_to(REPO).as_posix() for path in seen}


def command_entries(subcommand: str) -> set[str]:
    """The modules `kdmed <subcommand>` imports: those of `cmd_<subcommand>` in kdmed/cli.py."""
    tree = ast.parse((REPO / "kdmed" / "cli.py").read_text())
    name = "cmd_" + subcommand.replace("-", "_")
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return {n.module for n in ast.walk(function) if isinstance(n, ast.ImportFrom) and n.module}


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "real/dvc.yaml"])
def test_every_stage_depends_on_the_code_its_command_runs(pipeline):
    """Before, `train` did not list inference.py or data/transforms.py and `localize` did not list
    evaluate.py (which it imported): editing them left stale models and reports that `dvc repro` called
    up to date. Now every kdmed module a stage's command imports, transitively, is covered by its deps."""
    stages = yaml.safe_load((REPO / pipeline).read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        words = body["cmd"].split()
        subcommand = next(
            w for i, w in enumerate(words[1:], 1) if not w.startswith("-") and words[i - 1] != "--params"
        )
        deps = [d for d in body["deps"] if d.startswith("kdmed")]
        for dep in deps:
            assert (REPO / dep).exists(), f"{pipeline}: stage {name} lists '{dep}', which does not exist"
        needed = closure(command_entries(subcommand)) - NOT_A_DEP
        uncovered = sorted(
            m for m in needed if not any(m == d or m.startswith(d.rstrip("/") + "/") for d in deps)
        )
        assert not uncovered, f"{pipeline}: stage {name} runs {uncovered} without listing them in its deps"


def test_no_stage_imports_another_stage():
    """Stages learn each other's outputs from kdmed.paths, never by importing one another."""
    files = {name: module_file(name).relative_to(REPO).as_posix() for name in STAGE_MODULES}
    for name in STAGE_MODULES:
        others = {files[other] for other in STAGE_MODULES if other != name}
        assert not closure({name}) & others, (
            f"{name} imports another stage: {sorted(closure({name}) & others)}"
        )


def test_config_does_not_import_the_data_layer():
    """The config <-> data package cycle is gone: loading params imports no kdmed.data module."""
    assert not {m for m in closure({"kdmed.config"}) if m.startswith("kdmed/data/")}
