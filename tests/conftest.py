"""Shared fixtures: the real-data folder (skipped with a reason when absent) and tiny parameter sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

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
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["common"]["image_size"] = 96
    data["datasets"] = {
        "brain": {
            "adapter": "brats",
            "root": str(root / "demo" / "brain"),
            "slice_range": [8, 32],
            "min_foreground_pixels": 200,
            "split": {"train": 0.45, "val": 0.15, "test": 0.4},
        }
    }
    data["pipeline"]["datasets"] = ["brain"]
    data["method_overrides"] = {"brain": {}}
    data["preprocess"]["out_dir"] = str(root / "processed")
    data["train"].update(out_dir=str(root / "models"), epochs=2, steps=0, validate_every=1, resume=False)
    data["evaluate"]["out_dir"] = str(root / "reports")
    data["localize"].update(datasets=["brain"], out_dir=str(root / "reports"), max_images=12, batch_size=4)
    data["methods"]["stpm"]["batch_size"] = 8
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    params = load_params(path)
    preprocess_dataset("brain", params)
    return params
