"""Only models that fit the upload are offered, the best preselected with the reason (kdmed.model_choice)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kdmed.io.study import Study, StudyMetadata
from kdmed.model_choice import Upload, choose_models, dataset_modality, is_colour, upload_modality


def header(dataset: str, method: str, kind: str, day: int, channels: int = 1) -> SimpleNamespace:
    card = SimpleNamespace(dataset=dataset, method=method, name=f"{dataset}/{method}",
                           trained_at=f"2026-11-{day:02d}T00:00:00+00:00")  # fmt: skip
    serving = SimpleNamespace(kind=kind, preprocessing=SimpleNamespace(channels=channels))
    return SimpleNamespace(card=card, serving=serving)


# the demo catalogue, newest first as `kdmed.review.model_catalogue` lists it
CATALOGUE = [
    header("wbc", "stpm", "image", 28, channels=3),
    header("oct", "stpm", "image", 27),
    header("brain", "stpm", "volume", 26),
    header("brain", "rd4ad", "volume", 25),
    header("oct", "mkd", "image", 24),
    header("brain", "mkd", "volume", 23),
]


def names(choice) -> list[str]:
    return [CATALOGUE[k].card.name for k in choice.fitting]


@pytest.mark.parametrize(
    ("dataset", "modality"),
    [("brain", "MR"), ("brats", "MR"), ("ixi_t1", "MR"), ("brain_mri_2d", "MR"), ("oct2017", "OCT"),
     ("wbc", "microscopy"), ("pbc_to_wbc", "microscopy"), ("ct_chest", "CT"), ("demo", None)],
)  # fmt: skip
def test_a_dataset_name_implies_its_modality(dataset, modality):
    assert dataset_modality(dataset) == modality


def test_dicom_modalities_are_named_like_datasets_and_colour_is_measured():
    assert [upload_modality(c) for c in ("MR", "opt", "OCT", "SM", "XC", "OT", None, "US")] == [
        "MR", "OCT", "OCT", "microscopy", "microscopy", None, None, "US"]  # fmt: skip
    grey = np.random.default_rng(0).random((30, 40)) * 255
    assert not is_colour(grey) and not is_colour(np.repeat(grey[..., None], 3, axis=-1))
    assert is_colour(np.stack([grey, grey * 0.5, 255 - grey], axis=-1))


def test_a_3d_mr_volume_is_offered_the_brain_models_newest_first():
    choice = choose_models(CATALOGUE, Upload(is_volume=True, modality="MR", colour=None))
    assert names(choice) == ["brain/stpm", "brain/rd4ad", "brain/mkd"]
    assert choice.preselected == 2
    assert choice.why == (
        "preselected brain/stpm: the upload is a 3D MR volume and this model was trained on 3D MR volumes; "
        "newest of 3 that fit"
    )
    assert choice.reasons[1] == "scores 2D grey OCT images; the upload is a 3D MR volume"


def test_2d_images_go_to_the_models_of_their_colour_and_modality():
    grey = choose_models(CATALOGUE, Upload(is_volume=False, modality=None, colour=False))
    assert names(grey) == ["oct/stpm", "oct/mkd"]
    assert grey.reasons[0] == (
        "trained on 2D colour microscopy images; the upload is a 2D grey image (no modality recorded)"
    )
    colour = choose_models(CATALOGUE, Upload(is_volume=False, modality=None, colour=True))
    assert names(colour) == ["wbc/stpm"] and colour.why.endswith("the only one of 6 that fits")
    # a DICOM modality that says OCT wins over colour (an OCT stored as RGB is still an OCT)
    oct_rgb = choose_models(CATALOGUE, Upload(is_volume=False, modality="OCT", colour=True))
    assert names(oct_rgb) == ["oct/stpm", "oct/mkd"]


def test_known_modalities_are_preferred_over_unknown_datasets():
    catalogue = [header("demo", "stpm", "image", 28), header("oct", "stpm", "image", 20)]
    choice = choose_models(catalogue, Upload(is_volume=False, modality="OCT", colour=False))
    assert choice.fitting == (1, 0) and choice.preselected == 1  # the older, but it was trained on OCT
    assert choice.why.endswith("the closest match of 2 that fit")
    assert "(dataset 'demo', modality unknown)" in choice.reasons[0]


def test_when_nothing_fits_every_model_says_why():
    choice = choose_models(CATALOGUE, Upload(is_volume=True, modality="CT", colour=None))
    assert choice.fitting == () and choice.preselected is None
    assert choice.why == "none of the 6 models fits a 3D CT volume"
    assert choice.reasons[2] == "trained on 3D MR volumes; the upload is a 3D CT volume"
    assert len(choice.reasons) == len(CATALOGUE)


def test_the_traits_of_a_loaded_study():
    rgb = np.zeros((8, 8, 3), np.float32)
    rgb[..., 0] = 200
    image = Study(array=rgb, affine=np.eye(4), spacing=(1.0, 1.0),
                  metadata=StudyMetadata(source_kind="dicom", modality="XC"))  # fmt: skip
    assert Upload.of(image) == Upload(is_volume=False, modality="microscopy", colour=True)
    assert Upload.of(image).describe() == "a 2D colour microscopy image"
    volume = Study(array=np.zeros((4, 4, 4), np.float32), affine=np.eye(4), spacing=(1.0, 1.0, 1.0),
                   metadata=StudyMetadata(source_kind="nifti", orientation=("R", "A", "S")))  # fmt: skip
    assert Upload.of(volume).describe() == "a 3D volume (no modality recorded)"
