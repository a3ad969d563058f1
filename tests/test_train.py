"""The shared training loop on demo data: a short training makes an injected lesion stand out; checkpoints
round-trip with their metadata; an interrupted run resumes to the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kdmed.checkpoint import load_checkpoint, read_metadata
from kdmed.config import OptimizerConfig, StpmConfig, load_params
from kdmed.data.preprocess import preprocess_dataset
from kdmed.data.slices import load_split
from kdmed.errors import CheckpointError
from kdmed.inference import predict_images
from kdmed.models.stpm import STPM
from kdmed.train import fit, train_stage

REPO = Path(__file__).resolve().parents[1]
LESION_EPOCHS = 30


@pytest.fixture(scope="module")
def tiny_brain(tmp_path_factory):
    """Tiny demo brain volumes, preprocessed at 64 px by the real stages."""
    from kdmed.data.demo import BrainDemoSpec, generate_brain

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
    data["preprocess"]["out_dir"] = str(root / "processed")
    data["train"].update(out_dir=str(root / "models"), epochs=2, steps=0, validate_every=1, resume=False)
    data["evaluate"]["out_dir"] = str(root / "reports")
    data["methods"]["stpm"]["batch_size"] = 8
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    params = load_params(path)
    preprocess_dataset("brain", params)
    return params


def test_injected_lesion_scores_above_clean_tissue(tiny_brain):
    """Real ImageNet teacher (EfficientNet-Lite0, offline), a short training on normal demo slices; then a
    bright round lesion painted into clean held-out slices must raise every slice's score, and the map
    inside the lesion must rise well above what the same region shows on the clean slice."""
    train = load_split(tiny_brain.preprocess.out_dir, "brain", "train")
    test = load_split(tiny_brain.preprocess.out_dir, "brain", "test").normals()
    torch.manual_seed(0)
    model = STPM(StpmConfig(backbone="efficientnet_lite0"))
    fit(
        model,
        train.images,
        train.images[:8],
        epochs=LESION_EPOCHS,
        batch_size=8,
        teacher_cache_mb=256,
        optimizer_config=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
        device=torch.device("cpu"),
        amp=None,
        seed=0,
    )
    size = test.images.shape[-1]
    order = np.argsort(-(test.images[:, 0] > 20).flatten(1).sum(1).numpy())[:6]  # most tissue first
    clean = test.images[torch.from_numpy(order.copy())].clone()
    yy, xx = np.mgrid[:size, :size]
    lesion = (yy - 0.42 * size) ** 2 + (xx - 0.6 * size) ** 2 <= (size / 9) ** 2
    injected = clean.clone()
    injected[:, :, torch.from_numpy(lesion)] = 235
    before, after = predict_images(model, clean), predict_images(model, injected)
    assert np.all(after.scores > before.scores), (before.scores, after.scores)
    rise = after.maps[:, lesion].mean() / before.maps[:, lesion].mean()
    assert rise > 1.5, rise


def test_train_stage_writes_a_complete_checkpoint(tiny_brain):
    summary = train_stage(tiny_brain, "brain", "stpm")
    path = Path(summary["checkpoint"])
    metadata = read_metadata(path)
    for key in (
        "method",
        "architecture",
        "preprocess",
        "dataset_config",
        "image_size",
        "calibration",
        "training",
        "versions",
        "teacher_weights",
    ):
        assert key in metadata, key
    assert metadata["teacher_weights"] != "random"
    assert metadata["calibration"]["validation_normals"] > 0
    checkpoint = load_checkpoint(path)
    assert not checkpoint.detector.teacher.training
    test = load_split(tiny_brain.preprocess.out_dir, "brain", "test")
    scores = predict_images(checkpoint.detector, test.images[:4]).scores
    assert np.isfinite(scores).all()
    log = (Path(tiny_brain.evaluate.out_dir) / "brain" / "stpm" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,loss") and len(log) == 1 + tiny_brain.train.epochs


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="not a kdmed checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_interrupted_training_resumes_to_the_same_weights(tiny_brain, tmp_path):
    train = load_split(tiny_brain.preprocess.out_dir, "brain", "train").images[:32]
    config = StpmConfig(backbone="resnet18", weights="random")
    kwargs = dict(
        batch_size=8,
        optimizer_config=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
        device=torch.device("cpu"),
        amp=None,
        seed=5,
    )

    def fresh():
        torch.manual_seed(1)
        return STPM(config)

    straight = fit(fresh(), train, train[:8], epochs=3, **kwargs)
    state_file = tmp_path / "state.pt"
    fit(fresh(), train, train[:8], epochs=2, state_file=state_file, **kwargs)  # "interrupted" after 2 epochs
    resumed = fit(fresh(), train, train[:8], epochs=3, state_file=state_file, **kwargs)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for name, value in straight.best_state.items():
        assert torch.allclose(value.float(), resumed.best_state[name].float(), atol=1e-5), name


def test_cached_teacher_features_train_exactly_like_the_teacher_pass():
    images = (torch.rand(24, 1, 64, 64) * 255).to(torch.uint8)
    kwargs = dict(
        epochs=2,
        batch_size=8,
        optimizer_config=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
        device=torch.device("cpu"),
        amp=None,
        seed=2,
    )
    results = []
    for budget in (0, 512):
        torch.manual_seed(3)
        results.append(
            fit(
                STPM(StpmConfig(backbone="resnet18", weights="random")),
                images,
                images[:8],
                teacher_cache_mb=budget,
                **kwargs,
            )
        )
    for name, value in results[0].best_state.items():
        assert torch.allclose(value.float(), results[1].best_state[name].float(), atol=1e-5), name
