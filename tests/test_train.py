"""The shared training loop on demo data: checkpoints round-trip with their metadata; an interrupted run
resumes to the same weights; cached teacher features train exactly like the teacher pass."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from kdmed.checkpoint import load_checkpoint, read_header, save_checkpoint
from kdmed.config import OptimizerConfig, StpmConfig
from kdmed.data.slices import load_split
from kdmed.errors import CheckpointError, KdmedError
from kdmed.inference import predict_images
from kdmed.models.stpm import STPM
from kdmed.train import FitSettings, fit, train_stage

REPO = Path(__file__).resolve().parents[1]


def test_train_stage_writes_a_complete_checkpoint(tiny_brain):
    summary = train_stage(tiny_brain, "brain", "stpm")
    path = Path(summary["checkpoint"])
    header = read_header(path)
    assert header.card.teacher_weights != "random" and header.card.method == "stpm"
    serving = header.serving
    assert serving.kind == "volume" and serving.preprocessing.image_size == tiny_brain.common.image_size
    policy, config = serving.slice_policy, tiny_brain.dataset("brain")
    assert (policy.first, policy.last) == tuple(config.slice_range)
    assert policy.min_foreground_pixels == config.min_foreground_pixels
    assert serving.aggregation.how == tiny_brain.train.study_aggregation
    calibration = serving.calibration
    assert calibration.validation_normals > 0 and calibration.map_floor > 0
    assert calibration.map_floor_quantile == tiny_brain.train.map_floor_quantile
    profile = serving.input_profile  # the out-of-distribution guard's description of the training inputs
    assert profile is not None and profile.threshold > 0 and profile.validation_images > 0
    assert set(profile.statistic_low) == {
        "mean_intensity",
        "intensity_spread",
        "foreground_fraction",
        "colour",
    }
    checkpoint = load_checkpoint(path)
    channels = sum(
        f.channels for f in checkpoint.detector.teacher.feature_info
    )  # every teacher layer, pooled
    assert len(profile.feature_mean) == len(profile.feature_std) == channels
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


def test_old_or_damaged_headers_are_refused_with_how_to_retrain(tiny_brain, tmp_path):
    """A v1 checkpoint (before the serving contract) and a header missing a contract field are refused
    with a message naming the problem and the retraining command, never half-loaded."""
    import safetensors.torch

    path = Path(train_stage(tiny_brain, "brain", "stpm")["checkpoint"])
    state = safetensors.torch.load_file(str(path))
    v1 = tmp_path / "v1.safetensors"
    safetensors.torch.save_file(state, str(v1), metadata={"kdmed": json.dumps(
        {"format": "kdmed-checkpoint", "format_version": 1, "method": "stpm", "calibration": {"threshold": 1}}
    )})  # fmt: skip
    with pytest.raises(CheckpointError, match=r"v1 kdmed checkpoint.*slice policy.*dvc repro"):
        load_checkpoint(v1)
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        payload = json.loads(json.loads(handle.read(size))["__metadata__"]["kdmed"])
    del payload["header"]["serving"]["calibration"]["map_floor"]
    broken = tmp_path / "broken.safetensors"
    safetensors.torch.save_file(state, str(broken), metadata={"kdmed": json.dumps(payload)})
    with pytest.raises(CheckpointError, match=r"map_floor.*retrain"):
        load_checkpoint(broken)
    header = read_header(path)
    other = STPM(StpmConfig(backbone="resnet18", weights="random"))
    with pytest.raises(CheckpointError, match="build the header from the detector"):
        save_checkpoint(tmp_path / "mismatch.safetensors", other, header)


def random_stpm() -> STPM:
    """The same randomly initialised ResNet-18 STPM every call (the resume tests start from it)."""
    torch.manual_seed(1)
    return STPM(StpmConfig(backbone="resnet18", weights="random"))


def sgd_run(epochs: int, **changes) -> FitSettings:
    """CPU fp32 run settings, batch 8, SGD at lr 0.1 with momentum 0.9."""
    return FitSettings(
        epochs=epochs,
        batch_size=8,
        optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
        device=torch.device("cpu"),
        amp=None,
        seed=5,
        **changes,
    )


def test_interrupted_training_resumes_to_the_same_weights(tiny_brain, tmp_path):
    train = load_split(tiny_brain.preprocess.out_dir, "brain", "train").images[:32]
    run = sgd_run(epochs=3)
    fresh = random_stpm

    straight = fit(fresh(), train, train[:8], run)
    state_file = tmp_path / "state.pt"
    fit(
        fresh(), train, train[:8], replace(run, epochs=2, state_file=state_file)
    )  # "interrupted" after 2 epochs
    resumed = fit(fresh(), train, train[:8], replace(run, state_file=state_file))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for name, value in straight.best_state.items():
        assert torch.allclose(value.float(), resumed.best_state[name].float(), atol=1e-5), name


def test_resume_with_a_changed_learning_rate_starts_afresh_with_the_new_one(tmp_path, caplog):
    """Before, the resume point's optimiser state (and so its learning rate) was reloaded whatever
    params.yaml said: a `dvc exp run -S ...lr=...` after an interruption silently trained on the old lr.
    Now a resume point written with other hyper-parameters is set aside, and the log names the change."""
    train = (torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    old = sgd_run(epochs=1, state_file=tmp_path / "state.pt")
    new = replace(old, epochs=2, optimizer=OptimizerConfig(name="sgd", lr=0.01, momentum=0.9))
    fresh = random_stpm

    fit(fresh(), train, train[:8], old)  # interrupted after 1 epoch at lr 0.1
    with caplog.at_level("WARNING"):
        resumed = fit(fresh(), train, train[:8], new)
    straight = fit(fresh(), train, train[:8], replace(new, state_file=None))  # lr 0.01 from the start
    assert "optimizer.lr: 0.1 -> 0.01" in caplog.text and "starting afresh" in caplog.text
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for name, value in straight.best_state.items():
        assert torch.allclose(value.float(), resumed.best_state[name].float(), atol=1e-6), name


def test_cached_teacher_features_train_exactly_like_the_teacher_pass():
    images = (torch.rand(24, 1, 64, 64) * 255).to(torch.uint8)
    run = FitSettings(
        epochs=2,
        batch_size=8,
        optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
        device=torch.device("cpu"),
        amp=None,
        seed=2,
    )
    results = []
    for budget in (0, 512):
        torch.manual_seed(3)
        model = STPM(StpmConfig(backbone="resnet18", weights="random"))
        results.append(fit(model, images, images[:8], replace(run, teacher_cache_mb=budget)))
    for name, value in results[0].best_state.items():
        assert torch.allclose(value.float(), results[1].best_state[name].float(), atol=1e-5), name


def test_training_and_calibration_never_read_the_test_split(tiny_brain, monkeypatch, tmp_path):
    """The threshold is fixed from validation data only: training, checkpoint choice and calibration run
    with the test split made unreadable, and the evaluate stage uses the checkpoint's threshold as is."""
    import kdmed.train as train_module
    from kdmed.config import load_params
    from kdmed.data.slices import split_path
    from kdmed.evaluate import evaluate_stage

    processed = Path(tiny_brain.preprocess.out_dir)
    test_file = split_path(processed, "brain", "test")
    hidden = tmp_path / "hidden_test.npz"
    test_file.rename(hidden)
    requested = []
    real_load_split = train_module.load_split

    def guarded(out_dir, dataset, split):
        requested.append(split)
        assert split != "test", "training asked for the test split"
        return real_load_split(out_dir, dataset, split)

    monkeypatch.setattr(train_module, "load_split", guarded)
    try:
        summary = train_stage(tiny_brain, "brain", "stpm")
    finally:
        hidden.rename(test_file)
    assert set(requested) == {"train", "val"}
    threshold = read_header(Path(summary["checkpoint"])).threshold
    assert threshold == summary["threshold"]

    params = load_params(Path(tiny_brain.preprocess.out_dir).parent / "params.yaml")
    metrics = evaluate_stage(params, "brain", "stpm")
    assert metrics["threshold"] == pytest.approx(threshold)
    assert {"average_precision", "f1_max", "sensitivity_at_specificity", "intervals"} <= set(metrics)
    reports = Path(params.evaluate.out_dir) / "brain" / "stpm"
    for name in ("roc.csv", "pr.csv", "histogram.csv", "scores.csv", "metrics.json", "panel.png"):
        assert (reports / name).is_file(), name


def test_a_diverging_loss_is_a_kdmed_error_the_cli_reports(tiny_brain, monkeypatch):
    """Before, a FloatingPointError escaped `kdmed train` as a traceback; now the CLI's handler catches it."""
    train = load_split(tiny_brain.preprocess.out_dir, "brain", "train").images[:16]
    monkeypatch.setattr(STPM, "loss", lambda self, batch, teacher=None: torch.tensor(float("nan")))
    with pytest.raises(KdmedError, match="lower the learning rate") as info:
        fit(
            STPM(StpmConfig(backbone="resnet18", weights="random")), train, train[:8],
            FitSettings(epochs=1, batch_size=8, optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
                        device=torch.device("cpu"), amp=None, seed=0),
        )  # fmt: skip
    assert isinstance(info.value, FloatingPointError)
