"""NIfTI-1/2 (plain, gzipped, 4D), Analyze refusal, and 2D images (8/16-bit, float, RGB, palette, pages)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io import inspect_source, list_series, load_study


def canonical(img: nib.Nifti1Image, volume: int | None = None) -> nib.Nifti1Image:
    data = np.asanyarray(img.dataobj if volume is None else img.dataobj[..., volume])
    return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, dtype=np.float32), img.affine))


# ---------------------------------------------------------------- real NIfTI examples (nibabel, BraTS)


@pytest.fixture(scope="module")
def nibabel_dir(shared_data):
    return shared_data / "nifti" / "nibabel"


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, volume, n_volumes",
    [
        ("anatomical.nii", 0, 1),  # big-endian int16
        ("reoriented_anat_moved.nii", 0, 1),  # float32, oblique-ish affine
        ("standard.nii.gz", 0, 1),
        ("example4d.nii.gz", 1, 2),
        ("functional.nii", 7, 20),  # scaled by scl_slope / scl_inter
        ("example_nifti2.nii.gz", 1, 2),  # NIfTI-2 (540-byte header)
    ],
)
def test_nibabel_examples_match_nibabel_canonical(nibabel_dir, name, volume, n_volumes):
    path = nibabel_dir / name
    img = nib.load(path)
    study = load_study(path, volume_index=volume)
    ref = canonical(img, volume if len(img.shape) == 4 else None)
    assert study.metadata.source_kind == "nifti" and study.is_volume
    assert (study.metadata.n_volumes, study.metadata.volume_index) == (n_volumes, volume)
    np.testing.assert_allclose(study.array, np.asarray(ref.dataobj), rtol=1e-6)
    np.testing.assert_allclose(study.affine, ref.affine, atol=1e-5)
    assert study.metadata.orientation == ("R", "A", "S")


@pytest.mark.realdata
def test_analyze_is_refused_with_a_way_out(nibabel_dir):
    with pytest.raises(UnsupportedStudyError, match="analyze.hdr: this is an Analyze 7.5 header.*Convert"):
        load_study(nibabel_dir / "analyze.hdr")


@pytest.mark.realdata
def test_content_not_extension_decides(nibabel_dir, tmp_path):
    renamed = tmp_path / "scan.png"  # a gzipped NIfTI-2 under a misleading name
    renamed.write_bytes((nibabel_dir / "example_nifti2.nii.gz").read_bytes())
    assert load_study(renamed).array.shape == (32, 20, 12)
    upload = [("brain", gzip.decompress((nibabel_dir / "example4d.nii.gz").read_bytes()))]
    assert load_study(upload).array.shape == (128, 96, 24)


@pytest.mark.realdata
@pytest.mark.parametrize("patient", ["brats_2013_pat0003_1", "brats_2013_pat0005_1", "brats_2013_pat0006_1"])
def test_brats_flair_volumes(shared_data, patient):
    path = shared_data / "brats2015" / patient / "Flair_subtrMeanDivStd.nii.gz"
    study = load_study(path)
    assert study.array.shape == (240, 240, 155)
    assert study.spacing == pytest.approx((1.0, 1.0, 1.0))
    ref = canonical(nib.load(path))
    np.testing.assert_array_equal(study.array, np.asarray(ref.dataobj))
    np.testing.assert_allclose(study.affine, ref.affine)


# ---------------------------------------------------------------- real 2D images (OCT, WBC)


@pytest.mark.realdata
def test_oct_jpegs_load_grey_in_stored_order(shared_data):
    paths = sorted((shared_data / "oct2017" / "test" / "CNV").glob("*.jpeg"))[:3]
    assert paths
    for path in paths:
        study = load_study(path)
        with Image.open(path) as im:
            expected = np.asarray(im, dtype=np.float32)
        assert not study.is_volume and study.metadata.source_kind == "image"
        np.testing.assert_array_equal(study.array, expected)


@pytest.mark.realdata
def test_wbc_bmps_load_rgb(shared_data):
    for path in sorted((shared_data / "wbc" / "dataset1").glob("*.bmp"))[:3]:
        study = load_study(path)
        assert study.array.ndim == 3 and study.array.shape[2] == 3
        with Image.open(path) as im:
            np.testing.assert_array_equal(study.array, np.asarray(im.convert("RGB"), dtype=np.float32))


# ---------------------------------------------------------------- synthetic images


def test_16bit_png_and_tiff_keep_their_values(tmp_path):
    values = (np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) * 50 % 65536).astype(np.uint16)
    values[0, 0] = 65535
    for suffix in ("png", "tif"):
        path = tmp_path / f"deep.{suffix}"
        Image.fromarray(values).save(path)
        study = load_study(path)
        assert study.array.shape == (30, 40)
        np.testing.assert_array_equal(study.array, values.astype(np.float32))


def test_float_tiff_and_multipage_tiff(tmp_path):
    pages = [np.full((8, 9), k + 0.25, np.float32) for k in range(3)]
    path = tmp_path / "pages.tif"
    Image.fromarray(pages[0]).save(path, save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]])
    study = load_study(path, volume_index=2)
    assert study.metadata.n_volumes == 3
    np.testing.assert_array_equal(study.array, pages[2])
    with pytest.raises(StudyReadError, match="volume_index 3 is out of range"):
        load_study(path, volume_index=3)


def test_rgba_and_palette_become_rgb(tmp_path):
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    study = load_study(tmp_path / "a.png")
    assert study.array.shape == (5, 6, 3) and float(study.array[0, 0, 0]) == 200.0
    assert any("alpha" in w for w in study.metadata.warnings)
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert load_study(tmp_path / "p.png").array.shape == (5, 6, 3)


def test_image_listing_and_inspection(tmp_path):
    Image.fromarray(np.zeros((7, 11), np.uint8)).save(tmp_path / "x.bmp")
    (info,) = list_series(tmp_path / "x.bmp")
    assert (info.rows, info.columns, info.n_slices) == (7, 11, 1)
    summary = inspect_source(tmp_path / "x.bmp")
    assert summary["shape"] == [7, 11] and summary["orientation"] is None


# ---------------------------------------------------------------- synthetic NIfTI edge cases


def test_synthetic_nifti_with_lps_affine_is_reoriented(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    affine = np.diag([-2.0, -3.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "lps.nii.gz")
    study = load_study(tmp_path / "lps.nii.gz")
    np.testing.assert_array_equal(study.array, data[::-1, ::-1, :].astype(np.float32))
    assert study.spacing == pytest.approx((2.0, 3.0, 4.0))
    np.testing.assert_allclose(study.affine @ [1, 2, 3, 1], affine @ [0, 0, 3, 1])  # same physical voxel


def test_nifti_without_orientation_warns(tmp_path):
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "bare.nii")
    assert any("no orientation" in w for w in load_study(tmp_path / "bare.nii").metadata.warnings)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_voxels_are_an_error(tmp_path, bad):
    data = np.zeros((3, 3, 3), np.float32)
    data[1, 1, 1] = bad
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "bad.nii.gz")
    with pytest.raises(StudyReadError, match=r"bad\.nii\.gz: the image holds .*(NaN|infinite)"):
        load_study(tmp_path / "bad.nii.gz")


def test_5d_and_rgb_nifti_are_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 1, 3), np.float32), np.eye(4)), tmp_path / "vec.nii")
    with pytest.raises(UnsupportedStudyError, match="5D data"):
        load_study(tmp_path / "vec.nii")
    rgb = np.zeros((2, 2, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")
    with pytest.raises(UnsupportedStudyError, match="RGB or complex"):
        load_study(tmp_path / "rgb.nii")


def test_nifti_pair_header_is_refused(tmp_path):
    nib.save(nib.Nifti1Pair(np.zeros((2, 2, 2), np.float32), np.eye(4)), tmp_path / "pair.img")
    with pytest.raises(UnsupportedStudyError, match="pair.hdr: this is the header of a NIfTI .hdr/.img pair"):
        load_study(tmp_path / "pair.hdr")


def test_4d_nifti_volume_index(tmp_path):
    data = np.stack([np.full((2, 2, 2), t, np.int16) for t in range(4)], axis=-1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "t.nii.gz")
    assert float(load_study(tmp_path / "t.nii.gz", volume_index=3).array.max()) == 3.0
    with pytest.raises(StudyReadError, match=r"t\.nii\.gz: volume_index 4 is out of range.*4 volume"):
        load_study(tmp_path / "t.nii.gz", volume_index=4)
