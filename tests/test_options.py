"""The improvement options of the real-data protocols (README: improvements): Reinhard colour normalisation,
training-time augmentation (which bypasses the teacher cache), a model scored on another dataset's test
split (`transfer`), and the ensemble of the methods' calibrated margins."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdmed.augment import augment_batch
from kdmed.config import OptimizerConfig, StpmConfig, TransferConfig
from kdmed.data import stain
from kdmed.data.preprocess import preprocess_dataset
from kdmed.ensemble import combine, ensemble_stage, margins
from kdmed.errors import ConfigError
from kdmed.evaluate import evaluate_stage, transfer_stage
from kdmed.models.stpm import STPM
from kdmed.train import FitSettings, fit, train_stage


def test_lab_round_trip_and_reinhard_reaches_the_reference():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.05, 0.95, size=(3, 32, 32))
    assert np.allclose(stain.lab_to_rgb(stain.rgb_to_lab(rgb)), rgb, atol=1e-6)
    # a pinker, darker copy of the same image (another stain batch) lands on the same colours
    shifted = np.clip(rgb * np.array([1.0, 0.7, 0.85])[:, None, None] * 0.8, 0, 1)
    out_a, out_b = stain.reinhard(rgb), stain.reinhard(shifted)
    mean, sd = stain.lab_statistics(out_a)
    assert np.allclose(mean, stain.REINHARD_REFERENCE[0], atol=0.02)
    assert np.allclose(sd, stain.REINHARD_REFERENCE[1], rtol=0.1, atol=0.005)
    assert np.abs(out_a - out_b).mean() < 0.5 * np.abs(rgb - shifted).mean()
    assert out_a.dtype == np.float32 and out_a.min() >= 0 and out_a.max() <= 1


def test_reinhard_keeps_a_flat_image_finite_and_refuses_grey():
    flat = np.full((3, 8, 8), 0.6)
    assert np.isfinite(stain.reinhard(flat)).all()
    with pytest.raises(ValueError, match=r"\(3, H, W\) RGB"):
        stain.reinhard(np.zeros((1, 8, 8)))


def test_reference_statistics_reproduce_a_known_reference():
    images = [stain.reinhard(np.random.default_rng(i).uniform(0, 1, (3, 16, 16))) for i in range(3)]
    means, sds = stain.reference_statistics(images)
    assert np.allclose(means, stain.REINHARD_REFERENCE[0], atol=0.02)
    assert np.allclose(sds, stain.REINHARD_REFERENCE[1], rtol=0.15, atol=0.005)


def test_augmentation_keeps_the_grid_and_is_seeded():
    images = (torch.rand(6, 3, 16, 16) * 255).to(torch.uint8)
    names = ("hflip", "vflip", "rot90", "intensity")
    a = augment_batch(images, names, torch.Generator().manual_seed(4))
    b = augment_batch(images, names, torch.Generator().manual_seed(4))
    assert a.dtype == torch.uint8 and a.shape == images.shape and torch.equal(a, b)
    assert not torch.equal(a, images)
    flipped = augment_batch(images, ("hflip",), torch.Generator().manual_seed(1))
    for original, out in zip(images, flipped, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(-1))
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment_batch(images, ("elastic",), torch.Generator())


def test_augmented_training_bypasses_the_teacher_cache(monkeypatch):
    calls = []
    monkeypatch.setattr("kdmed.train.cache_teacher_features", lambda *a, **k: calls.append(1))
    images = (torch.rand(16, 1, 64, 64) * 255).to(torch.uint8)
    state = fit(
        STPM(StpmConfig(backbone="resnet18", weights="random")),
        images,
        images[:4],
        FitSettings(
            epochs=1,
            batch_size=8,
            optimizer=OptimizerConfig(name="sgd", lr=0.01),
            device=torch.device("cpu"),
            amp=None,
            seed=0,
            teacher_cache_mb=512,
            augment=("hflip", "intensity"),
        ),
    )
    assert calls == [] and state.best_state is not None


def test_config_refuses_unknown_augmentations_and_bad_transfers(tiny_brain):
    from kdmed.config import TrainConfig

    with pytest.raises(ConfigError, match="train.augment"):
        TrainConfig(augment=("elastic",))
    with pytest.raises(ConfigError, match=r"transfers.x.test"):
        dataclasses.replace(
            tiny_brain, transfers={"x": TransferConfig(model="brain", test="nowhere", method="stpm")}
        )
    with pytest.raises(ConfigError, match=r"pipeline.ensembles"):
        dataclasses.replace(
            tiny_brain, pipeline=dataclasses.replace(tiny_brain.pipeline, ensembles=("nowhere",))
        )


def test_ensemble_margins_are_the_mean_over_methods_and_need_the_same_images():
    names, labels = np.array(["a", "b", "c"]), np.array([0, 1, 1])
    columns = {
        "stpm": {"name": names, "label": labels, "patient": names, "score": np.array([1.0, 3.0, 5.0])},
        "rd4ad": {"name": names, "label": labels, "patient": names, "score": np.array([0.0, 0.2, 0.1])},
    }
    _, per_method, score = combine(columns, {"stpm": (3.0, 2.0), "rd4ad": (0.1, 0.1)})
    assert np.allclose(per_method["stpm"], [-1, 0, 1]) and np.allclose(per_method["rd4ad"], [-1, 1, 0])
    assert np.allclose(score, [-1, 0.5, 0.5])
    assert np.allclose(margins([2.0], 1.0, 0.5), [2.0])
    columns["rd4ad"] = {**columns["rd4ad"], "name": np.array(["a", "c", "b"])}
    with pytest.raises(ConfigError, match="different images"):
        combine(columns, {"stpm": (3.0, 2.0), "rd4ad": (0.1, 0.1)})


@pytest.mark.slow
def test_transfer_and_ensemble_stages_on_demo_volumes(tiny_brain):
    """A model trained on one dataset scores another dataset's test split into its own report folder,
    and the ensemble combines the methods' test scores with their stored calibrations."""
    base = tiny_brain.dataset("brain")
    other = dataclasses.replace(base, split=dataclasses.replace(base.split, train=0.2, val=0.2, test=0.6))
    params = dataclasses.replace(
        tiny_brain,
        datasets={**tiny_brain.datasets, "brain_b": other},
        transfers={"brain_to_b": TransferConfig(model="brain", test="brain_b", method="stpm")},
        pipeline=dataclasses.replace(tiny_brain.pipeline, methods=("stpm", "rd4ad"), ensembles=("brain",)),
    )
    preprocess_dataset("brain_b", params)
    for method in ("stpm", "rd4ad"):
        train_stage(params, "brain", method)
        evaluate_stage(params, "brain", method)
    metrics = transfer_stage(params, "brain_to_b")
    out = Path(params.evaluate.out_dir) / "brain_to_brain_b" / "stpm"
    assert metrics["dataset"] == "brain_b" and metrics["model_dataset"] == "brain"
    assert json.loads((out / "metrics.json").read_text())["test_images"] == metrics["test_images"]
    assert (out / "scores.csv").read_text().count("\n") == metrics["test_images"] + 1
    ensemble = ensemble_stage(params, "brain")
    own = [
        json.loads((Path(params.evaluate.out_dir) / "brain" / m / "metrics.json").read_text())
        for m in ("stpm", "rd4ad")
    ]
    assert ensemble["image_auroc_stpm"] == pytest.approx(own[0]["image_auroc"], abs=1e-5)
    assert ensemble["image_auroc_rd4ad"] == pytest.approx(own[1]["image_auroc"], abs=1e-5)
    with (Path(params.evaluate.out_dir) / "brain" / "ensemble" / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == own[0]["test_images"]
    flagged_anomalies = [int(r["flagged"]) for r in rows if r["label"] == "1"]
    assert ensemble["test_sensitivity"] == pytest.approx(np.mean(flagged_anomalies), abs=1e-6)
    assert all(int(r["flagged"]) == int(float(r["score"]) > 0) for r in rows)
    with pytest.raises(ConfigError, match="no transfer 'nope'"):
        transfer_stage(params, "nope")


def test_selection_passes_spread_over_the_run():
    from kdmed.train import validation_interval

    assert validation_interval(4, 0, 200) == 4  # the epoch rule when no pass count is set
    assert validation_interval(4, 10, 200) == 20  # 10 passes over 200 one-step epochs
    assert validation_interval(4, 10, 2) == 1  # fewer epochs than passes: every epoch


def test_serving_replays_the_stored_colour_normalisation(tmp_path):
    """An upload scored by a model trained with Reinhard normalisation gets the same normalisation."""
    from PIL import Image

    from kdmed.contract import Calibration, Preprocessing, ServingContract, StudyAggregation
    from kdmed.inference import study_items
    from kdmed.io import load_study

    rng = np.random.default_rng(1)
    path = tmp_path / "cell.png"
    Image.fromarray((rng.uniform(0.2, 0.9, (40, 40, 3)) * 255).astype(np.uint8)).save(path)
    study = load_study(path)

    def items(mode: str) -> np.ndarray:
        serving = ServingContract(
            kind="image",
            preprocessing=Preprocessing(image_size=32, channels=3, stain_normalization=mode),
            calibration=Calibration(
                rule="specificity", target_specificity=0.95, threshold=1, scale=1, map_floor=1
            ),
            aggregation=StudyAggregation("max", 3),
            slice_policy=None,
        )
        return np.asarray(study_items(serving, "wbc/rd4ad", study)[0][0]["image"])

    plain, normalised = items("none"), items("reinhard")
    assert np.allclose(normalised, stain.reinhard(plain), atol=1e-6)
    assert not np.allclose(normalised, plain, atol=0.05)
