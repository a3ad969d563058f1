"""Where every stage reads and writes: one small function per output location, from the params.

The stages (`kdmed.data.preprocess`, `kdmed.train`, `kdmed.evaluate`, `kdmed.ensemble`,
`kdmed.localize.stage`, `kdmed.summary`) learn each other's outputs from here, never by importing one
another. The same locations are spelled out in dvc.yaml (a test checks that they agree).
"""

from __future__ import annotations

from pathlib import Path

from kdmed.config import Params

TRAIN_STATE_DIR = Path("tmp") / "train_state"  # resume points of interrupted runs (not a DVC output)


def processed_dir(params: Params, dataset: str) -> Path:
    """`<preprocess.out_dir>/<dataset>/`: train/val/test .npz, index.csv, summary.json."""
    return Path(params.preprocess.out_dir) / dataset


def processed_summary_path(params: Params, dataset: str) -> Path:
    """The preprocess stage's counts (and the number of channels) for `dataset`."""
    return processed_dir(params, dataset) / "summary.json"


def model_dir(params: Params, dataset: str, method: str) -> Path:
    return Path(params.train.out_dir) / dataset / method


def checkpoint_path(params: Params, dataset: str, method: str) -> Path:
    """The trained, calibrated checkpoint of `method` on `dataset` (what every scoring path loads)."""
    return model_dir(params, dataset, method) / "model.safetensors"


def train_state_path(dataset: str, method: str) -> Path:
    """The resume point of an interrupted training run (deleted when the run completes)."""
    return TRAIN_STATE_DIR / f"{dataset}_{method}.pt"


def report_dir(params: Params, report: str, method: str) -> Path:
    """`<evaluate.out_dir>/<report>/<method>/`; `report` is a dataset, a transfer's `<model>_to_<test>`,
    and `method` may be "ensemble"."""
    return Path(params.evaluate.out_dir) / report / method


def metrics_path(params: Params, report: str, method: str) -> Path:
    return report_dir(params, report, method) / "metrics.json"


def scores_path(params: Params, report: str, method: str) -> Path:
    """One row per test image (written by evaluate / transfer, read by the ensemble stage)."""
    return report_dir(params, report, method) / "scores.csv"


def train_log_path(params: Params, dataset: str, method: str) -> Path:
    """Per-epoch training curves, beside the evaluation reports (git-tracked, small, for `dvc plots`)."""
    return report_dir(params, dataset, method) / "train_log.csv"


def localize_dir(params: Params, dataset: str) -> Path:
    """`<localize.out_dir>/<dataset>/localize/`: the localize stage's metrics.json and panel."""
    return Path(params.localize.out_dir) / dataset / "localize"
