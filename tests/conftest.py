"""Shared fixtures: the real-data folder (skipped with a reason when absent) and tiny parameter sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Tests run offline: never try to download weights, and keep torch to the machine's two cores.
os.environ.setdefault("KDMED_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_data_dir() -> Path:
    return Path(os.environ.get("KDMED_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set KDMED_SHARED_DATA to run real-data tests)")
    return path


@pytest.fixture(scope="session")
def tiny_brain(tmp_path_factory):
    """Tiny demo brain volumes (64x64x40), preprocessed to 96 px slices by the real stages."""
    from kdmed.config import load_params
    from kdmed.data.demo import BrainDemoSpec, generate_brain
    from kdmed.data.preprocess import preprocess_dataset

    root = tmp_path_factory.mktemp("tiny")
    generate_brain(root / "demo", BrainDemoSpec(normal_cases=4, abnormal_cases=3, shape=(64, 64, 40)), seed=3)
    from tiny_params import tiny_brain_params

    params = load_params(tiny_brain_params(root))
    preprocess_dataset("brain", params)
    return params


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A real Orthanc (Debian's package, DICOMweb plugin) on 127.0.0.1, stopped by its PID at the end;
    skipped with the reason when it is not installed (`make test-slow` installs it as root)."""
    from kdmed.errors import KdmedError
    from kdmed.pacs.orthanc import find_orthanc, start, stop

    try:
        find_orthanc()
    except KdmedError as error:
        pytest.skip(str(error))
    folder = tmp_path_factory.mktemp("orthanc")
    server = start(folder)
    yield server
    stop(folder)
