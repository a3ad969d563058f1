"""Dataset adapters: layouts indexed into records, splits drawn by patient (no patient crosses splits),
and the real BraTS 2015 / OCT2017 / WBC folders indexed with the expected counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdmed.config import DatasetConfig, SplitConfig
from kdmed.data.adapters import StudyRecord, check_patient_splits, index_dataset
from kdmed.errors import DatasetError


def assert_no_patient_crosses_splits(records):
    splits_of = {}
    for record in records:
        splits_of.setdefault(record.patient, set()).add(record.split)
    assert all(len(s) == 1 for s in splits_of.values())


def write_png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)


def test_bmad_layout(tmp_path):
    for i in range(4):
        write_png(tmp_path / "train" / "good" / f"n{i}.png")
    for split in ("valid", "test"):
        write_png(tmp_path / split / "good" / "img" / "g.png")
        write_png(tmp_path / split / "Ungood" / "img" / "u.png")
        write_png(tmp_path / split / "Ungood" / "label" / "u.png", 255)
    records = index_dataset(DatasetConfig(adapter="bmad", root=str(tmp_path)), seed=0)
    counts = Counter((r.split, r.label) for r in records)
    assert counts == {("train", 0): 4, ("val", 0): 1, ("val", 1): 1, ("test", 0): 1, ("test", 1): 1}
    assert all(r.mask.endswith("label/u.png") for r in records if r.label == 1)


def test_generic_folders_split_normals_and_keep_anomalies_out_of_training(tmp_path):
    for i in range(10):
        write_png(tmp_path / "normal" / f"n{i}.png")
    for i in range(4):
        write_png(tmp_path / "abnormal" / f"a{i}.png")
    records = index_dataset(DatasetConfig(adapter="folders", root=str(tmp_path)), seed=1)
    assert not any(r.split == "train" and r.label == 1 for r in records)
    assert {r.split for r in records} == {"train", "val", "test"}
    assert_no_patient_crosses_splits(records)


def test_a_patient_in_two_splits_is_rejected():
    records = [
        StudyRecord(image="a", label=0, patient="p1", split="train"),
        StudyRecord(image="b", label=0, patient="p1", split="test"),
    ]
    with pytest.raises(DatasetError, match="p1"):
        check_patient_splits(records)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        index_dataset(DatasetConfig(adapter="bmad", root=str(tmp_path / "nope")), seed=0)


@pytest.mark.realdata
def test_brats2015_preprocesses_into_normal_and_tumour_slices(shared_data, tmp_path):
    from kdmed.config import load_params
    from kdmed.data.preprocess import preprocess_dataset

    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        "common: {image_size: 64}\n"
        "datasets:\n"
        f"  brats: {{adapter: brats, root: '{shared_data / 'brats2015'}', slice_range: [40, 130],\n"
        "          min_foreground_pixels: 2000, split: {train: 0.34, val: 0.33, test: 0.33}}\n"
        f"preprocess: {{out_dir: '{tmp_path / 'processed'}'}}\n"
        "methods: {}\ntrain: {}\nevaluate: {}\ndemo_data: {}\n"
        "pipeline: {datasets: [brats], methods: [stpm]}\n"
    )
    summary = preprocess_dataset("brats", load_params(params_file))
    splits = summary["splits"]
    assert {s["patients"] for s in splits.values()} == {1}  # three patients, one per split
    assert splits["train"]["anomalous"] == 0 and splits["train"]["normal"] > 10
    for split in ("val", "test"):
        assert splits[split]["normal"] > 0 and splits[split]["anomalous"] > 0
        # nearest-neighbour resizing (never interpolation) can drop a lesion of one or two voxels at 64 px
        assert splits[split]["with_mask"] >= 0.95 * splits[split]["anomalous"]
    data = np.load(tmp_path / "processed" / "brats" / "test.npz")
    assert data["images"].shape[1:] == (1, 64, 64)
    assert data["masks"][data["labels"] == 1].reshape(-1, 64 * 64).any(1).mean() >= 0.95
    assert not data["masks"][data["labels"] == 0].any()


@pytest.mark.realdata
def test_oct2017_class_folders(shared_data):
    config = DatasetConfig(adapter="oct2017", root=str(shared_data / "oct2017"))
    records = index_dataset(config, seed=0)
    test = [r for r in records if r.split == "test"]
    assert Counter(r.group for r in test) == {"NORMAL": 50, "CNV": 50, "DME": 50, "DRUSEN": 50}
    assert sum(r.label for r in test) == 150
    assert all(r.label == 0 for r in records if r.split != "test")
    assert {r.split for r in records} == {"train", "val", "test"}
    assert_no_patient_crosses_splits(records)


@pytest.mark.realdata
def test_wbc_neutrophils_normal_other_types_anomalous(shared_data):
    config = DatasetConfig(
        adapter="wbc",
        root=str(shared_data / "wbc"),
        labels_csv="dataset1_labels.csv",
        images_dir="dataset1",
        normal_classes=(1,),
        split=SplitConfig(0.5, 0.2, 0.3),
    )
    records = index_dataset(config, seed=0)
    assert len(records) == 300
    assert Counter(r.label for r in records) == {0: 176, 1: 124}
    assert all(r.image.endswith(".bmp") for r in records)  # never the NNN.png segmentation masks
    assert not any(r.split == "train" and r.label == 1 for r in records)
    assert_no_patient_crosses_splits(records)


def centroid(weights):
    rows, cols = np.indices(weights.shape)
    total = weights.sum()
    return np.array([(rows * weights).sum() / total, (cols * weights).sum() / total])


@pytest.mark.parametrize("start", [100, 101, 102, 103])
def test_a_mask_resized_with_its_image_stays_on_it(start):
    """Masks and images share one pixel-centre convention (half-integer centres): a square and its mask,
    shrunk 512 -> 128 together, keep their centroids within half an output pixel. Before, masks used torch's
    legacy "nearest" (pixel floor(i * in / out)) while images were area-averaged: the mask of a square
    starting at row 101 sat 0.75 px off its image."""
    from kdmed.data.transforms import PrepareImaged

    image = np.zeros((512, 512), np.uint8)
    image[start : start + 64, start + 7 : start + 7 + 64] = 255
    out = PrepareImaged(128)({"image": image, "mask": image > 0})
    assert out["mask"].dtype == bool and out["mask"].shape == (128, 128)
    shift = np.abs(centroid(out["image"][0]) - centroid(out["mask"].astype(float)))
    assert (shift <= 0.5 + 1e-9).all(), shift
