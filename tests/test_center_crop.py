"""`datasets.<name>.center_crop`: the central part of a 2D image, the same in preprocessing and serving."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdmed.checkpoint import load_checkpoint
from kdmed.config import DatasetConfig
from kdmed.data.arrays import center_crop, resize, to_unit_range
from kdmed.data.transforms import build_image_transform
from kdmed.errors import ConfigError
from kdmed.inference import score_study
from kdmed.io import load_study
from tests.fake_models import write_checkpoint


def _cell_image(size: int = 120) -> np.ndarray:
    """A grey background, a bright centred square and a dark border band that a 0.5 crop removes."""
    image = np.full((size, size), 100, np.uint8)
    image[:10] = 0
    image[45:75, 45:75] = 250
    return image


def test_center_crop_keeps_the_central_fraction():
    array = np.arange(100).reshape(10, 10)
    assert center_crop(array, 1.0) is array
    np.testing.assert_array_equal(center_crop(array, 0.6), array[2:8, 2:8])
    assert center_crop(np.zeros((3, 9, 7)), 0.5).shape == (3, 4, 4)  # rounded to whole pixels


def test_image_and_mask_follow_the_same_crop(tmp_path):
    Image.fromarray(_cell_image()).save(tmp_path / "cell.png")
    mask = np.zeros((120, 120), np.uint8)
    mask[50:70, 50:70] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    item = build_image_transform(64, center_crop=0.5)(
        {"image": tmp_path / "cell.png", "mask": tmp_path / "mask.png"}
    )
    expected = resize(to_unit_range(_cell_image()[None, 30:90, 30:90]), 64)
    np.testing.assert_allclose(item["image"], expected, atol=1e-6)
    assert item["original_shape"] == (60, 60)
    rows = np.flatnonzero(item["mask"].any(1))  # mask rows 50..69 -> cropped 20..39 of 60 -> 64 px grid
    assert (rows.min(), rows.max()) == (21, 42)


def test_serving_replays_the_checkpoints_crop(tmp_path):
    Image.fromarray(_cell_image()).save(tmp_path / "cell.png")
    study = load_study(tmp_path / "cell.png")
    cropped = score_study(
        load_checkpoint(write_checkpoint(tmp_path / "crop.safetensors", "image", center_crop=0.5)), study
    )
    whole = score_study(load_checkpoint(write_checkpoint(tmp_path / "whole.safetensors", "image")), study)
    expected = resize(to_unit_range(_cell_image()[None, 30:90, 30:90]), 64)
    np.testing.assert_allclose(cropped.views[0], expected, atol=1e-6)
    assert whole.views[0].min() == 0.0 and cropped.views[0].min() > 0.3  # the dark band is gone
    assert cropped.maps[0].shape == cropped.views[0].shape[-2:]


@pytest.mark.parametrize("fraction", [0.0, 0.2, 1.5])
def test_a_wrong_fraction_names_the_setting(fraction):
    with pytest.raises(ConfigError, match="center_crop"):
        DatasetConfig(adapter="wbc", root="x", center_crop=fraction)
