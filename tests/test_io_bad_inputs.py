"""Bad input of every kind gives a `StudyReadError` that names the file and the problem, never a raw
library exception. Every bad file is written here, in tmp_path."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io import inspect_source, list_series, load_study
from kdmed.io.synthetic import series_datasets, to_bytes, write_datasets

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def png_bytes(shape=(40, 50)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def nifti_bytes() -> bytes:
    data = np.random.default_rng(2).normal(size=(8, 8, 8)).astype(np.float32)
    return nib.Nifti1Image(data, np.eye(4)).to_bytes()


def dicom_bytes() -> bytes:
    return to_bytes(series_datasets(np.ones((1, 16, 16), np.int16), iop=AXIAL)[0])


BAD_FILES = {
    "empty.dcm": (b"", "empty"),
    "notes.txt": (b"patient notes, definitely not an image\n" * 20, "not a supported image format"),
    "random.bin": (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "not a supported"),
    "cut.png": (png_bytes()[:200], "not a readable PNG image"),
    "cut.jpg": (jpeg_bytes()[:300], "not a readable JPEG image"),
    "cut.nii": (nifti_bytes()[:600], "NIfTI-1"),
    "cut.nii.gz": (gzip.compress(nifti_bytes())[:120], "gzip stream is corrupt or truncated"),
    "cut_header.dcm": (dicom_bytes()[:300], "incomplete DICOM image"),
    "cut_mid.dcm": (dicom_bytes()[:1000], "holds no pixel data"),
    "cut_pixels.dcm": (dicom_bytes()[:-100], "pixel data"),
    "fake.zip": (b"PK\x03\x04" + b"\x01" * 64, "zip archive is corrupt"),
    "empty.zip": (b"PK\x05\x06" + b"\x00" * 18, "zip archive"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_on_disk_is_a_clear_error(tmp_path, name):
    data, text = BAD_FILES[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(StudyReadError) as info:
        load_study(tmp_path / name)
    assert name in str(info.value) and text in str(info.value)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_upload_names_only_the_basename(name):
    data, text = BAD_FILES[name]
    with pytest.raises(StudyReadError) as info:
        load_study([(f"/home/someone/private/{name}", data)])
    message = str(info.value)
    assert text in message and name in message and "/home/someone" not in message


def test_corrupt_slice_in_a_series_names_that_file(tmp_path):
    paths = write_datasets(tmp_path, series_datasets(np.ones((4, 8, 8), np.int16), iop=AXIAL))
    paths[2].write_bytes(paths[2].read_bytes()[:-50])
    with pytest.raises(
        StudyReadError, match=f"{paths[2].name}: the pixel data holds 78 bytes but the header declares 128"
    ):
        load_study(tmp_path)


def test_zero_byte_and_text_files_next_to_a_series_are_skipped(tmp_path):
    write_datasets(tmp_path, series_datasets(np.ones((3, 8, 8), np.int16), iop=AXIAL))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    study = load_study(tmp_path)
    assert study.array.shape == (8, 8, 3)
    assert any("2 file(s) that are not images were skipped" in w for w in study.metadata.warnings)


def test_nan_in_dicom_float_rescale_is_refused(tmp_path):
    (ds,) = series_datasets(np.ones((1, 8, 8), np.int16), iop=AXIAL)
    ds.RescaleSlope = "1e39"  # would overflow float32: refused from the header, before any voxel
    write_datasets(tmp_path, [ds])
    with pytest.raises(StudyReadError, match=r"IM00000: RescaleSlope = 1e\+39 is beyond"):
        load_study(tmp_path / "IM00000")


@pytest.mark.parametrize(
    "source, text",
    [
        ([], "empty list"),
        (42, "unsupported source of type int"),
        ([3.5], "unsupported list element"),
        ([("x.dcm", "not bytes")], "upload content must be bytes"),
        ("/definitely/not/here.nii", "no such file or folder"),
    ],
)
def test_bad_source_values(source, text):
    with pytest.raises(StudyReadError, match=text):
        load_study(source)


def test_empty_folder_and_folder_without_images(tmp_path):
    with pytest.raises(StudyReadError, match="holds no files"):
        load_study(tmp_path)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.csv").write_text("b")
    with pytest.raises(StudyReadError, match="no readable image was found"):
        load_study(tmp_path)


def test_several_separate_images_are_not_one_study(tmp_path):
    for k in range(2):
        (tmp_path / f"{k}.png").write_bytes(png_bytes())
    with pytest.raises(StudyReadError, match="holds 2 separate image files"):
        load_study(tmp_path)


def test_series_uid_for_a_non_dicom_source(tmp_path):
    (tmp_path / "x.nii").write_bytes(nifti_bytes())
    with pytest.raises(StudyReadError, match="series_uid='1.2' was given but the source holds no DICOM"):
        load_study(tmp_path, series_uid="1.2")


@pytest.mark.parametrize("index", [-1, 1.5, True])
def test_volume_index_must_be_a_non_negative_int(tmp_path, index):
    (tmp_path / "x.nii").write_bytes(nifti_bytes())
    with pytest.raises(StudyReadError, match="volume_index must be a non-negative integer"):
        load_study(tmp_path / "x.nii", volume_index=index)


def test_listing_and_inspection_fail_the_same_way(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for call in (list_series, inspect_source):
        with pytest.raises(StudyReadError, match="notes.txt"):
            call(tmp_path / "notes.txt")


def test_dicom_object_without_image_is_unsupported(tmp_path):
    (ds,) = series_datasets(np.ones((1, 4, 4), np.int16), iop=AXIAL)
    for keyword in ("Rows", "Columns", "PixelData"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    write_datasets(tmp_path, [ds], prefix="report")
    with pytest.raises(UnsupportedStudyError, match="report00000: a DICOM object without image"):
        load_study(tmp_path / "report00000")
    with pytest.raises(UnsupportedStudyError, match="none of the 1 DICOM files|without image"):
        load_study(tmp_path)
