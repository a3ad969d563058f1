"""The out-of-distribution guard (`kdmed.ood`, `kdmed.input_profile`): calibrated on validation normals,
quiet on inputs like them, loud with its reasons on inputs unlike them, and never silent about whether it
could run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from fake_models import nifti_bytes, write_checkpoint

from kdmed.checkpoint import load_checkpoint, read_header, save_checkpoint
from kdmed.inference import score_study
from kdmed.input_profile import pooled_teacher_features, profile_inputs
from kdmed.io import load_study
from kdmed.ood import THRESHOLD_MARGIN, check_study, feature_distances, fit_profile, sample_evenly
from kdmed.score import score_source


def _inputs(rng, n, level=120, size=16):
    """n uint8 grey inputs (n, 3, size, size): a bright square on black, around `level`."""
    x = np.zeros((n, 3, size, size), np.uint8)
    x[:, :, 4:12, 4:12] = np.clip(rng.normal(level, 10, (n, 1, 8, 8)), 0, 255).astype(np.uint8)
    return x


@pytest.fixture
def profile():
    rng = np.random.default_rng(0)
    return fit_profile(
        rng.normal(0, 1, (400, 32)), _inputs(rng, 400), rng.normal(0, 1, (200, 32)), _inputs(rng, 200)
    )


def test_the_threshold_is_the_validation_quantile_times_the_margin(profile):
    rng = np.random.default_rng(0)
    rng.normal(0, 1, (400, 32))
    _inputs(rng, 400)
    validation = rng.normal(0, 1, (200, 32))
    distances = feature_distances(validation, profile.feature_mean, profile.feature_std)
    assert profile.threshold == pytest.approx(np.quantile(distances, 0.99) * THRESHOLD_MARGIN)
    assert profile.validation_images == 200 and profile.train_images == 400


def test_inputs_like_the_training_ones_pass_and_shifted_ones_warn_with_reasons(profile):
    rng = np.random.default_rng(1)
    quiet = check_study(profile, rng.normal(0, 1, (16, 32)), _inputs(rng, 16))
    assert quiet.available and not quiet.warn and quiet.reasons == ()
    assert quiet.distance < quiet.threshold and "resembles" in quiet.message
    loud = check_study(profile, rng.normal(3, 1, (16, 32)), _inputs(rng, 16))
    assert loud.warn and "image features" in loud.reasons[0] and loud.distance > loud.threshold
    assert loud.message.startswith("This study differs from the data this model was trained on")


def test_an_image_statistic_outside_its_range_warns_on_its_own(profile):
    rng = np.random.default_rng(2)
    dark = check_study(profile, rng.normal(0, 1, (8, 32)), _inputs(rng, 8, level=20))
    assert dark.warn and any("mean intensity" in r for r in dark.reasons)
    assert not any("image features" in r for r in dark.reasons)


def test_without_a_profile_or_a_scored_slice_the_check_says_it_could_not_run(profile):
    old = check_study(None, np.zeros((0, 0)), np.zeros((0, 3, 16, 16), np.uint8))
    assert not old.available and not old.warn and "kdmed profile-inputs" in old.message
    empty = check_study(profile, np.zeros((0, 32)), np.zeros((0, 3, 16, 16), np.uint8))
    assert not empty.available and "no slice was scored" in empty.message
    json.dumps(old.to_dict())


def test_a_profile_needs_enough_images():
    with pytest.raises(ValueError, match="at least 2 training"):
        fit_profile(
            np.zeros((1, 4)),
            np.zeros((1, 3, 8, 8), np.uint8),
            np.zeros((3, 4)),
            np.zeros((3, 3, 8, 8), np.uint8),
        )


def test_samples_spread_evenly_and_include_both_ends():
    assert sample_evenly(5, 16).tolist() == [0, 1, 2, 3, 4]
    picked = sample_evenly(100, 16)
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 99 and np.all(np.diff(picked) > 0)


def test_pooled_features_are_the_per_channel_means_of_every_teacher_layer(tmp_path):
    checkpoint = load_checkpoint(write_checkpoint(tmp_path / "m.safetensors", "image"))
    images = torch.randint(0, 255, (3, 1, 64, 64), dtype=torch.uint8)
    pooled = pooled_teacher_features(checkpoint.detector, images, batch_size=2)
    layers = checkpoint.detector.teacher_features(images.float().div(255).expand(-1, 3, -1, -1))
    expected = torch.cat([f.mean(dim=(2, 3)) for f in layers.values()], dim=1).double().numpy()
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)


def test_the_profile_travels_in_the_checkpoint_and_scoring_reports_the_check(tmp_path):
    path = write_checkpoint(tmp_path / "m.safetensors", "volume")
    study = tmp_path / "study.nii"
    study.write_bytes(nifti_bytes())
    before = score_source(study, path)
    assert before["out_of_distribution"]["available"] is False  # trained before the guard: said, not hidden
    checkpoint = load_checkpoint(path)
    result = score_study(checkpoint, load_study(study))
    scored = torch.from_numpy(result.inputs)
    profile = profile_inputs(checkpoint.detector, scored, scored, batch_size=4)
    header = checkpoint.header
    save_checkpoint(
        path,
        checkpoint.detector,
        dataclasses.replace(header, serving=dataclasses.replace(header.serving, input_profile=profile)),
    )
    assert read_header(path).serving.input_profile == profile  # exact round trip through the JSON header
    own = score_source(study, path)["out_of_distribution"]
    assert (
        own["available"] and not own["warn"] and own["slices_checked"] == len(sample_evenly(len(scored), 16))
    )
    inverted = tmp_path / "inverted.nii"
    import nibabel as nib

    image = nib.load(study)
    data = image.get_fdata()
    nib.save(nib.Nifti1Image(np.where(data > 0, 400 - data, 0).astype(np.float32), image.affine), inverted)
    other = score_source(inverted, path)["out_of_distribution"]
    assert other["available"] and other["warn"] and other["reasons"]
