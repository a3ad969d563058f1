"""Content sniffing, upload/zip/gzip handling and the read limits (zip bombs, path traversal, caps)."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset

from kdmed.errors import ConfigError, StudyReadError
from kdmed.io import ReadLimits, inspect_source, load_study
from kdmed.io.sniff import Kind, raw_dicom_offset, sniff
from kdmed.io.synthetic import series_datasets, to_bytes

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def image_bytes(fmt: str, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (4, 3)).save(buffer, format=fmt)
    return buffer.getvalue()


def nifti_bytes(data: np.ndarray, klass=nib.Nifti1Image) -> bytes:
    return klass(data, np.eye(4)).to_bytes()


def dicom_bytes() -> bytes:
    return to_bytes(series_datasets(np.zeros((1, 4, 4), np.int16), iop=AXIAL)[0])


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", Kind.EMPTY),
        (b"hello world, not an image", Kind.UNKNOWN),
        (gzip.compress(b"x"), Kind.GZIP),
        (zip_bytes({"a": b"b"}), Kind.ZIP),
        (image_bytes("PNG"), Kind.PNG),
        (image_bytes("JPEG"), Kind.JPEG),
        (image_bytes("BMP", "RGB"), Kind.BMP),
        (image_bytes("TIFF"), Kind.TIFF),
        (nifti_bytes(np.zeros((2, 2, 2), np.int16)), Kind.NIFTI1),
        (nifti_bytes(np.zeros((2, 2, 2), np.int16), nib.Nifti2Image), Kind.NIFTI2),
        (struct.pack("<i", 348) + b"\0" * 344, Kind.ANALYZE),
        (dicom_bytes(), Kind.DICOM),
    ],
)
def test_sniff(data, kind):
    assert sniff(data[:1024]) is kind


@pytest.mark.parametrize("implicit", [True, False])
def test_dicom_without_preamble_or_meta_header_is_detected_and_loaded(implicit):
    ds = series_datasets(np.arange(16, dtype=np.int16).reshape(1, 4, 4), iop=AXIAL)[0]
    ds.file_meta = FileMetaDataset()
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    raw = buffer.getvalue()
    assert raw[128:132] != b"DICM" and sniff(raw) is Kind.DICOM_RAW
    study = load_study(raw)
    assert study.array.shape == (4, 4, 1)
    np.testing.assert_array_equal(np.sort(study.array.ravel()), np.arange(16, dtype=np.float32))
    if not implicit:  # a stray leading byte before an explicit-VR data set is recognised, never parsed
        assert raw_dicom_offset(b"\x20" + raw) == 1 and sniff(b"\x20" + raw) is Kind.UNKNOWN


def test_gzipped_dicom_and_upload_objects():
    class Upload:  # what streamlit's file_uploader hands over
        name = "folder/scan.dcm.gz"

        def getvalue(self):
            return gzip.compress(dicom_bytes())

    assert load_study(Upload()).metadata.source_kind == "dicom"
    assert load_study([Upload()]).metadata.source_kind == "dicom"


def test_zip_with_unsafe_member_path_is_refused():
    data = zip_bytes({"../../etc/evil.dcm": dicom_bytes()})
    with pytest.raises(StudyReadError, match="unsafe member path"):
        load_study(data)
    with pytest.raises(StudyReadError, match="unsafe member path"):
        load_study(zip_bytes({"/abs/evil.dcm": dicom_bytes()}))


def test_zip_bomb_is_stopped_by_the_member_cap():
    bomb = zip_bytes({"zeros.dcm": b"\0" * (8 * 1024 * 1024)})  # 8 MiB of zeros, ~8 KiB compressed
    assert len(bomb) < 100_000
    with pytest.raises(StudyReadError, match="zeros.dcm"):
        load_study(bomb, limits=ReadLimits(max_file_bytes=1024 * 1024))


def test_many_members_are_stopped_by_the_total_cap():
    members = {f"m{k}.dcm": b"\0" * 600_000 for k in range(4)}
    with pytest.raises(StudyReadError, match="max_total_bytes"):
        load_study(zip_bytes(members), limits=ReadLimits(max_total_bytes=1_000_000))


def test_nested_zip_and_corrupt_zip_are_refused():
    with pytest.raises(StudyReadError, match="archives inside archives"):
        load_study(zip_bytes({"inner.zip": zip_bytes({"a.dcm": dicom_bytes()})}))
    with pytest.raises(StudyReadError, match="upload: the zip archive is corrupt"):
        load_study(b"PK\x03\x04" + b"\x00" * 100)


def test_file_count_and_size_limits(tmp_path):
    for k in range(4):
        (tmp_path / f"f{k}.dcm").write_bytes(dicom_bytes())
    with pytest.raises(StudyReadError, match="more than 3 files"):
        load_study(tmp_path, limits=ReadLimits(max_files=3))
    with pytest.raises(StudyReadError, match="f0.dcm: .* over the per-file limit"):
        load_study(tmp_path, limits=ReadLimits(max_file_bytes=100))


def test_voxel_limit_is_checked_before_decoding(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.eye(4)), tmp_path / "v.nii")
    with pytest.raises(StudyReadError, match=r"v\.nii: .*1,000 voxels.*max_voxels"):
        load_study(tmp_path / "v.nii", limits=ReadLimits(max_voxels=999))
    Image.new("L", (100, 100)).save(tmp_path / "i.png")
    with pytest.raises(StudyReadError, match="max_voxels"):
        load_study(tmp_path / "i.png", limits=ReadLimits(max_voxels=9_999))
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(dicom_bytes())
    with pytest.raises(StudyReadError, match="max_voxels"):
        load_study(folder, limits=ReadLimits(max_voxels=15))


@pytest.mark.parametrize("field", ["max_file_bytes", "max_voxels", "max_files", "max_total_bytes"])
def test_limits_must_be_positive_integers(field):
    with pytest.raises(ConfigError, match=field):
        ReadLimits(**{field: 0})


def test_zip_holding_one_gzipped_nifti_and_inspection_of_an_upload():
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    upload = zip_bytes({"export/brain.nii.gz": gzip.compress(nifti_bytes(data)), "__MACOSX/._brain": b"\0"})
    study = load_study(upload)
    np.testing.assert_array_equal(study.array, data.astype(np.float32))
    summary = inspect_source([("study.zip", upload)])
    assert summary["source_kind"] == "nifti" and summary["shape"] == [2, 3, 4]
