"""`datasets.<name>.image_size` and `.train_steps`: one dataset at its own size and length, end to end."""

from __future__ import annotations

from pathlib import Path

import yaml

from kdmed.checkpoint import read_header
from kdmed.config import load_params
from kdmed.data.demo import BrainDemoSpec, generate_brain
from kdmed.data.preprocess import preprocess_dataset
from kdmed.data.slices import load_split
from kdmed.paths import checkpoint_path
from kdmed.train import train_stage

REPO = Path(__file__).resolve().parents[1]


def test_a_dataset_is_preprocessed_trained_and_served_at_its_own_size(tmp_path):
    generate_brain(
        tmp_path / "demo", BrainDemoSpec(normal_cases=3, abnormal_cases=2, shape=(64, 64, 32)), seed=5
    )
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["common"]["image_size"] = 96
    data["datasets"] = {
        "brain": {
            "adapter": "brats",
            "root": str(tmp_path / "demo" / "brain"),
            "slice_range": [8, 24],
            "min_foreground_pixels": 100,
            "split": {"train": 0.34, "val": 0.33, "test": 0.33},
            "image_size": 64,
            "train_steps": 3,
        }
    }
    data["pipeline"]["datasets"] = ["brain"]
    data["method_overrides"] = {"brain": {}}
    data["localize"]["datasets"] = ["brain"]
    data["preprocess"]["out_dir"] = str(tmp_path / "processed")
    data["train"].update(out_dir=str(tmp_path / "models"), epochs=50, steps=0, resume=False)
    data["evaluate"]["out_dir"] = str(tmp_path / "reports")
    data["methods"]["stpm"]["batch_size"] = 4
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    params = load_params(path)

    summary = preprocess_dataset("brain", params)
    train = load_split(params.preprocess.out_dir, "brain", "train")
    assert summary["image_size"] == 64 and tuple(train.images.shape[-2:]) == (64, 64)

    train_stage(params, "brain", "stpm")
    header = read_header(checkpoint_path(params, "brain", "stpm"))
    assert header.serving.preprocessing.image_size == 64
    steps_per_epoch = train.images.shape[0] // 4
    assert header.training.steps == -(-3 // steps_per_epoch) * steps_per_epoch  # 3 steps, whole epochs
