"""`pip install kdmed` scores without the pipeline or the app: DVC, vl-convert and Streamlit are extras
(`kdmed[pipeline]`, `kdmed[app]`; `kdmed[dev]` holds both), nothing on the scoring path imports them, and
a command that needs a missing extra says which one to install."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from fake_models import nifti_bytes, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
PIPELINE = ("dvc", "dvc_render", "vl_convert")
APP = ("streamlit",)


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for line in requirements:
        name = line.split(";")[0]
        for stop in "<>=!~ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower())
    return names


def test_the_extras_split_scoring_from_the_pipeline_and_the_app():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = requirement_names(project["dependencies"])
    extras = {name: requirement_names(reqs) for name, reqs in project["optional-dependencies"].items()}
    assert not core & {"dvc", "streamlit", "vl-convert-python", "pandas"}
    assert {"dvc", "vl-convert-python"} <= extras["pipeline"] and "streamlit" in extras["app"]
    assert {"distributed"} <= extras["archive"] and {"onnx", "onnxruntime"} <= extras["onnx"]
    assert "openvino" in extras["openvino"]
    assert {
        "kdmed[app,pipeline,archive,onnx,openvino,pacs]",
        "pytest",
        "pytest-timeout",
        "import-linter",
        "ruff",
    } <= extras["dev"]


def run_without(blocked: tuple[str, ...], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`kdmed <args>` in a fresh interpreter where importing any of `blocked` fails as if it were not
    installed (a None in sys.modules is Python's own "not importable" marker)."""
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "from kdmed.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_kdmed_score_runs_without_dvc_vl_convert_or_streamlit(tmp_path):
    model = write_checkpoint(tmp_path / "model.safetensors", "volume")
    study = tmp_path / "study.nii"
    study.write_bytes(nifti_bytes())
    out = tmp_path / "out"
    result = run_without(
        PIPELINE + APP, ["score", str(study), "--model", str(model), "--out", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["n_slices"] == 12 and report["n_scored"] > 0
    assert (out / "maps.npz").is_file() and report["outputs"]["overlays"]


def test_a_command_that_needs_the_pipeline_extra_names_it(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("")
    result = run_without(PIPELINE, ["plots-template", "--repo", str(tmp_path)], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "pip install 'kdmed[pipeline]'" in result.stderr and "Traceback" not in result.stderr
