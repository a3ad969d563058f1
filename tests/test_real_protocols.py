"""The pieces the real-data protocols need: BraTS folders of both years split together, one intensity
normalisation for z-scored and raw volumes, class-folder datasets (PBC, brain MRI 2D), a test split taken
from another site or lab, and perceptual-hash deduplication."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from kdmed.config import DatasetConfig, SplitConfig
from kdmed.data.adapters import StudyRecord, index_dataset, with_test_from
from kdmed.data.dedup import deduplicate, phash
from kdmed.data.transforms import foreground_mask, normalize_percentiles, normalize_robust
from kdmed.errors import ConfigError, DatasetError


def head(rng, lesion: bool) -> np.ndarray:
    volume = np.zeros((40, 40, 20), np.float32)
    volume[6:34, 6:34, 2:18] = 300 + rng.normal(0, 20, (28, 28, 16))
    if lesion:
        volume[10:22, 10:22, 5:15] += 500  # a bright lesion, a tenth of the tissue
    return volume


def test_robust_normalisation_serves_raw_and_z_scored_volumes_and_ignores_a_large_lesion():
    rng = np.random.default_rng(0)
    raw = head(rng, lesion=True)
    fg = foreground_mask(raw)
    z = np.where(fg, (raw - raw[fg].mean()) / raw[fg].std(), 0.0)  # as the BraTS 2015 distributor did
    a, b = normalize_robust(raw, fg, 6.0), normalize_robust(z, fg, 6.0)
    np.testing.assert_allclose(a, b, atol=1e-4)  # an affine intensity change does not matter
    assert (foreground_mask(z) == fg).mean() > 0.999  # and z-scoring barely moves the foreground
    clean = head(np.random.default_rng(0), lesion=False)
    healthy = np.zeros_like(fg)
    healthy[6:34, 6:34, 2:18] = True
    healthy[10:22, 10:22, 5:15] = False
    level = lambda norm, v: float(np.median(norm(v, foreground_mask(v))[healthy]))  # noqa: E731
    robust = lambda v, f: normalize_robust(v, f, 6.0)  # noqa: E731
    percentile = lambda v, f: normalize_percentiles(v, f, 0.5, 99.5)  # noqa: E731
    shift_robust = abs(level(robust, raw) - level(robust, clean))
    shift_percentile = abs(level(percentile, raw) - level(percentile, clean))
    assert shift_robust < 0.03 and shift_percentile > 0.2  # a lesion rescales healthy tissue with percentiles


def write_case(folder: Path, names: tuple[str, str], lesion: bool) -> None:
    folder.mkdir(parents=True)
    volume = head(np.random.default_rng(len(str(folder))), lesion)
    seg = np.zeros(volume.shape, np.uint8)
    if lesion:
        seg[10:26, 10:26, 5:15] = 1
    nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / names[0])
    nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / names[1])


def test_brats_folders_of_both_years_are_split_by_patient_together(tmp_path):
    for i in range(3):
        write_case(
            tmp_path / "y2015" / f"brats_2013_pat{i}",
            ("Flair_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz"),
            True,
        )
    for i in range(4):
        write_case(tmp_path / "y2018" / f"Brats18_X_{i}", ("FLAIR.nii.gz", "GT_W.nii.gz"), i % 2 == 0)
    config = DatasetConfig(adapter="brats", root=str(tmp_path / "y2015"), extra_roots=(str(tmp_path / "y2018"),),
                           split=SplitConfig(0.4, 0.3, 0.3))  # fmt: skip
    records = index_dataset(config, 0)
    assert len(records) == 7 and {r.patient for r in records} >= {"brats_2013_pat0", "Brats18_X_3"}
    assert {Path(r.mask).name for r in records} == {"OTMultiClass.nii.gz", "GT_W.nii.gz"}
    splits = [r.split for r in records]
    assert splits.count("val") >= 2 and splits.count("test") >= 2
    write_case(tmp_path / "y2018" / "brats_2013_pat0", ("FLAIR.nii.gz", "GT_W.nii.gz"), True)
    with pytest.raises(DatasetError, match="repeat"):
        index_dataset(config, 0)


def png(value: int, size=(24, 24), noise: int = 0) -> bytes:
    rng = np.random.default_rng(value)
    image = (rng.random(size) * 255).astype(np.uint8)
    image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def test_class_folders_with_and_without_the_sources_own_split(tmp_path):
    for cls, n in (("neutrophil", 12), ("basophil", 4), ("monocyte", 4)):
        (tmp_path / "pbc" / cls).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "pbc" / cls / f"{cls}_{i}.png").write_bytes(png(i + 100 * len(cls)))
    pbc = index_dataset(DatasetConfig(adapter="class_folders", root=str(tmp_path / "pbc"),
                                      normal_class_names=("neutrophil",)), 0)  # fmt: skip
    assert all(r.label == (r.group != "neutrophil") for r in pbc)
    assert not any(r.split == "train" and r.label == 1 for r in pbc) and {r.split for r in pbc} == {
        "train",
        "val",
        "test",
    }
    for split, classes in (("train", ("notumor",)), ("test", ("notumor", "glioma"))):
        for cls in classes:
            (tmp_path / "mri" / split / cls).mkdir(parents=True)
            for i in range(6):
                (tmp_path / "mri" / split / cls / f"{i}.png").write_bytes(png(i + 1000 * len(split + cls)))
    mri = index_dataset(DatasetConfig(adapter="class_folders", root=str(tmp_path / "mri"),
                                      normal_class_names=("notumor",)), 0)  # fmt: skip
    assert {(r.split, r.group) for r in mri} == {
        ("train", "notumor"),
        ("val", "notumor"),
        ("test", "notumor"),
        ("test", "glioma"),
    }
    (tmp_path / "mri" / "train" / "glioma").mkdir()
    (tmp_path / "mri" / "train" / "glioma" / "x.png").write_bytes(png(7))
    with pytest.raises(DatasetError, match="anomalies in the training split"):
        index_dataset(
            DatasetConfig(
                adapter="class_folders", root=str(tmp_path / "mri"), normal_class_names=("notumor",)
            ),
            0,
        )
    with pytest.raises(ConfigError, match="normal_class_names"):
        DatasetConfig(adapter="class_folders", root=".")


def test_a_test_split_from_another_lab_replaces_the_own_one():
    own = [
        StudyRecord(image=f"a{i}", label=0, patient=f"a{i}", split=s)
        for i, s in enumerate(["train", "val", "test"])
    ]
    other = [StudyRecord(image=f"b{i}", label=i % 2, patient=f"b{i}", split="train") for i in range(4)]
    merged = with_test_from(own, other, "dataset1")
    assert [r.split for r in merged] == ["train", "val", "test", "test", "test", "test"]
    assert merged[-1].patient == "dataset1:b3" and sum(r.label for r in merged) == 2


def test_perceptual_hash_deduplication_keeps_the_test_copy(tmp_path):
    paths = {}
    for name, data in (("a", png(1)), ("b", png(2)), ("c", png(3))):
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(data)
    Image.open(paths["a"]).resize((48, 48)).save(tmp_path / "a_big.png")  # a resized copy
    (tmp_path / "b_copy.png").write_bytes(png(2))
    assert phash(str(paths["a"])) != phash(str(paths["b"]))
    records = [
        StudyRecord(image=str(paths["a"]), label=0, patient="a", split="train"),
        StudyRecord(image=str(tmp_path / "a_big.png"), label=0, patient="a_big", split="test"),
        StudyRecord(image=str(paths["b"]), label=0, patient="b", split="train"),
        StudyRecord(image=str(tmp_path / "b_copy.png"), label=0, patient="b_copy", split="train"),
        StudyRecord(image=str(paths["c"]), label=1, patient="c", split="test"),
    ]
    kept, report = deduplicate(records, 4)
    assert [r.patient for r in kept] == ["a_big", "b", "c"]
    assert report["duplicate_groups"] == 2 and report["images_dropped"] == 2
    assert report["groups_crossing_train_and_test"] == 1 and report["dropped_by_split"]["train"] == 2


@pytest.mark.realdata
def test_the_brain_mri_2d_collection_holds_duplicates_across_its_train_and_test(shared_data):
    config = DatasetConfig(
        adapter="class_folders", root=str(shared_data / "brain_mri_2d"), normal_class_names=("notumor",)
    )
    kept, report = deduplicate(index_dataset(config, 0), 0)
    assert report["groups_crossing_train_and_test"] > 0 and len(kept) < report["images"]


def test_healthy_ixi_volumes_are_brain_masked_and_resampled_like_brats(tmp_path):
    """IXI-style subjects (2 mm, whole head) come out brain-only on a 1 mm grid: the healthy-brain
    protocol's training data, preprocessed by the stages serving replays (resampling, robust scaling)."""
    from kdmed.config import PreprocessConfig
    from kdmed.contract import SCORED
    from kdmed.data.preprocess import slice_policy
    from kdmed.data.transforms import build_volume_transform

    (tmp_path / "T1").mkdir()
    (tmp_path / "DLMUSE").mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for i in range(4):
        head_volume = np.full((20, 20, 12), 50.0, np.float32)  # scalp and skull everywhere
        brain = np.zeros(head_volume.shape, np.int16)
        brain[5:15, 5:15, 3:9] = 7
        head_volume[brain > 0] = 300.0 + i
        nib.save(nib.Nifti1Image(head_volume, affine), tmp_path / "T1" / f"IXI00{i}-HH-1_T1.nii.gz")
        nib.save(nib.Nifti1Image(brain, affine), tmp_path / "DLMUSE" / f"IXI00{i}-HH-1_T1_DLMUSE.nii.gz")
    config = DatasetConfig(adapter="ixi", root=str(tmp_path), modality="t1", min_foreground_pixels=10)
    records = index_dataset(config, 0)
    assert len(records) == 4 and all(r.label == 0 and r.is_volume and r.brain_mask for r in records)
    settings = PreprocessConfig(normalization="robust", resample_mm=1.0, crop_foreground=False)
    items = build_volume_transform(settings, slice_policy(config), 16)(
        {"image": records[0].image, "brain_mask": records[0].brain_mask}
    )
    assert len(items) == 24 and items[0]["view"].shape == (1, 40, 40)  # 12 slices at 2 mm -> 24 at 1 mm
    scored = [item for item in items if item["status"] == SCORED]
    assert 10 <= len(scored) <= 14  # the brain's 6 slices at 2 mm, about 12 at 1 mm
    middle = scored[len(scored) // 2]["view"][0]
    assert middle[0, 0] == 0.0 and middle[20, 20] > 0  # skull removed, brain kept
    (tmp_path / "DLMUSE" / "IXI000-HH-1_T1_DLMUSE.nii.gz").unlink()
    with pytest.raises(DatasetError, match="no brain parcellation"):
        index_dataset(config, 0)
