"""`datasets.<name>.image_size` and `.train_steps`: one dataset at its own size and length, end to end."""

from __future__ import annotations

from tiny_params import tiny_brain_params

from kdmed.checkpoint import read_header
from kdmed.config import load_params
from kdmed.data.demo import BrainDemoSpec, generate_brain
from kdmed.data.preprocess import preprocess_dataset
from kdmed.data.slices import load_split
from kdmed.paths import checkpoint_path
from kdmed.train import train_stage


def test_a_dataset_is_preprocessed_trained_and_served_at_its_own_size(tmp_path):
    generate_brain(
        tmp_path / "demo", BrainDemoSpec(normal_cases=3, abnormal_cases=2, shape=(64, 64, 32)), seed=5
    )
    params = load_params(
        tiny_brain_params(
            tmp_path,
            common_size=96,
            slice_range=[8, 24],
            min_foreground_pixels=100,
            split={"train": 0.34, "val": 0.33, "test": 0.33},
            image_size=64,
            train_steps=3,
        )
    )

    summary = preprocess_dataset("brain", params)
    train = load_split(params.preprocess.out_dir, "brain", "train")
    assert summary["image_size"] == 64 and tuple(train.images.shape[-2:]) == (64, 64)

    train_stage(params, "brain", "stpm")
    header = read_header(checkpoint_path(params, "brain", "stpm"))
    assert header.serving.preprocessing.image_size == 64
    batch = min(params.methods.stpm.batch_size, train.images.shape[0])
    steps_per_epoch = train.images.shape[0] // batch
    assert header.training.steps == -(-3 // steps_per_epoch) * steps_per_epoch  # 3 steps, whole epochs
