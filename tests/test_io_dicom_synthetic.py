"""DICOM series synthesised with pydicom: the reader must recover exactly the values and geometry put in.

The expected affine is written out here from PS3.3 C.7.6.2.1.1 (independently of kdmed.io.dicom_geometry),
and the canonical reorientation is delegated to nibabel.as_closest_canonical as the oracle.
"""

from __future__ import annotations

import json
import random

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io import dicom_pixels, inspect_source, list_series, load_study
from kdmed.io.synthetic import PATIENT, series_datasets, to_bytes, write_datasets

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def oblique_iop() -> tuple[float, ...]:
    row = np.array([np.cos(0.35), np.sin(0.35), 0.0])
    col = np.array([0.0, np.cos(0.3), np.sin(0.3)])
    col -= row * (row @ col)
    col /= np.linalg.norm(col)
    return (*row, *col)


def expected(values: np.ndarray, iop, origin, pixel_spacing, slice_spacing) -> nib.Nifti1Image:
    """values (slices, rows, cols) already rescaled -> canonical RAS image, built independently of kdmed."""
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    lps = np.eye(4)
    lps[:3, 0] = row * pixel_spacing[1]  # i runs along a row: column spacing
    lps[:3, 1] = col * pixel_spacing[0]
    lps[:3, 2] = np.cross(row, col) * slice_spacing
    lps[:3, 3] = origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return nib.as_closest_canonical(nib.Nifti1Image(values.transpose(2, 1, 0).astype(np.float32), ras))


def shuffled(items: list, seed: int) -> list:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


def test_oblique_shuffled_monochrome1_rescaled_series(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4000, size=(12, 20, 16)).astype(np.uint16)
    iop, origin, spacing, step = oblique_iop(), (10.0, -20.0, 30.0), (0.8, 0.6), 2.5
    numbers = shuffled(range(1, 13), 1)  # InstanceNumbers unrelated to position
    datasets = series_datasets(
        stored, iop=iop, origin=origin, pixel_spacing=spacing, slice_spacing=step, instance_numbers=numbers,
        slope=2.0, intercept=-100.0, photometric="MONOCHROME1", window=(500.0, 1000.0),
    )  # fmt: skip
    write_datasets(tmp_path, shuffled(datasets, 2))

    study = load_study(tmp_path)

    lo, hi = -100.0, 65535 * 2.0 - 100.0  # stored range after rescale
    values = lo + hi - (stored.astype(np.float64) * 2.0 - 100.0)  # MONOCHROME1: inverted within that range
    ref = expected(values, iop, origin, spacing, step)
    assert study.is_volume and study.array.dtype == np.float32
    assert study.array.shape == ref.shape
    np.testing.assert_array_equal(study.array, np.asarray(ref.dataobj))
    np.testing.assert_allclose(study.affine, ref.affine, atol=1e-4)
    np.testing.assert_allclose(sorted(study.spacing), sorted((0.6, 0.8, 2.5)), atol=1e-5)
    assert study.metadata.orientation == ("R", "A", "S")
    assert study.metadata.photometric == "MONOCHROME1"
    assert study.metadata.window_center == pytest.approx(lo + hi - 500.0)
    assert study.metadata.window_width == pytest.approx(1000.0)


def test_instance_numbers_never_order_slices(tmp_path):
    stored = np.stack([np.full((4, 5), k, np.int16) for k in range(6)])  # slice k holds the value k
    datasets = series_datasets(stored, iop=AXIAL, instance_numbers=[6, 5, 4, 3, 2, 1], slice_spacing=3.0)
    write_datasets(tmp_path, shuffled(datasets, 3))
    study = load_study(tmp_path)
    assert study.array.shape == (5, 4, 6)  # (columns, rows, slices), already RAS after flipping X and Y
    assert [float(study.array[0, 0, k]) for k in range(6)] == [0, 1, 2, 3, 4, 5]
    assert study.spacing[2] == pytest.approx(3.0)


def test_rescale_applied_per_slice(tmp_path):
    stored = np.ones((3, 4, 4), np.int16) * 10
    datasets = series_datasets(stored, iop=AXIAL)
    for k, ds in enumerate(datasets):
        ds.RescaleSlope, ds.RescaleIntercept = str(k + 1), str(-k)
    write_datasets(tmp_path, datasets)
    study = load_study(tmp_path)
    assert [float(study.array[0, 0, k]) for k in range(3)] == [10.0, 19.0, 28.0]


def time_series(tmp_path, temporal_tag: str | None):
    """5 positions x 3 time points; time point t holds values 100 * t + slice."""
    series_uid, study_uid = generate_uid(), generate_uid()
    datasets = []
    for t in range(3):
        stored = np.stack([np.full((4, 4), 100 * t + k, np.int16) for k in range(5)])
        extra = {"AcquisitionTime": f"1200{t:02d}.000"}
        if temporal_tag:
            extra[temporal_tag] = t + 1
        datasets += series_datasets(
            stored, iop=AXIAL, series_uid=series_uid, study_uid=study_uid, extra=extra,
            instance_numbers=[1 + 5 * t + k for k in range(5)],
        )  # fmt: skip
    write_datasets(tmp_path, shuffled(datasets, 4))
    return tmp_path


@pytest.mark.parametrize("temporal_tag", [None, "TemporalPositionIdentifier"])
def test_4d_series_returns_the_requested_time_point(tmp_path, temporal_tag):
    folder = time_series(tmp_path, temporal_tag)
    for t in range(3):
        study = load_study(folder, volume_index=t)
        assert study.metadata.n_volumes == 3 and study.metadata.volume_index == t
        assert study.array.shape == (4, 4, 5)
        assert [float(study.array[0, 0, k]) for k in range(5)] == [100 * t + k for k in range(5)]
    with pytest.raises(StudyReadError, match="volume_index 3 is out of range"):
        load_study(folder, volume_index=3)
    (info,) = list_series(folder)
    assert (info.n_slices, info.n_volumes, info.orientation) == (5, 3, "axial")


def test_duplicate_positions_that_are_not_time_points_raise(tmp_path):
    stored = np.zeros((5, 4, 4), np.int16)
    datasets = series_datasets(stored, iop=AXIAL)
    extra = series_datasets(stored[:1], iop=AXIAL, series_uid=datasets[0].SeriesInstanceUID)[0]
    write_datasets(tmp_path, [*datasets, extra])
    with pytest.raises(StudyReadError, match="duplicate slice positions"):
        load_study(tmp_path)


def test_exact_duplicate_files_are_ignored(tmp_path):
    datasets = series_datasets(np.zeros((3, 4, 4), np.int16), iop=AXIAL)
    write_datasets(tmp_path, [*datasets, datasets[1]])
    study = load_study(tmp_path)
    assert study.array.shape[2] == 3
    assert any("duplicate file" in w for w in study.metadata.warnings)


def test_missing_slice_is_reported_as_a_gap(tmp_path):
    datasets = series_datasets(np.zeros((6, 4, 4), np.int16), iop=AXIAL, slice_spacing=2.0)
    write_datasets(tmp_path, datasets[:3] + datasets[4:])
    study = load_study(tmp_path)
    assert any("gap in the slice stack" in w for w in study.metadata.warnings)


def test_single_slice_uses_slice_thickness(tmp_path):
    (ds,) = series_datasets(np.zeros((1, 4, 6), np.int16), iop=AXIAL, pixel_spacing=(0.5, 0.25))
    ds.SliceThickness = "3.0"
    write_datasets(tmp_path, [ds])
    study = load_study(tmp_path / "IM00000")
    assert study.array.shape == (6, 4, 1)
    assert study.spacing == pytest.approx((0.25, 0.5, 3.0))


def several_series(tmp_path):
    study_uid = generate_uid()
    axial = series_datasets(np.zeros((10, 8, 8), np.int16), iop=AXIAL, study_uid=study_uid, series_number=3,
                            description="axial T1")  # fmt: skip
    sagittal = series_datasets(np.ones((14, 8, 8), np.int16), iop=SAGITTAL, study_uid=study_uid,
                               series_number=4, description="sag T2")  # fmt: skip
    scout = series_datasets(np.ones((20, 8, 8), np.int16), iop=AXIAL, study_uid=study_uid, series_number=1,
                            description="scan", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))  # fmt: skip
    write_datasets(tmp_path, axial + sagittal + scout)
    return tmp_path, axial[0].SeriesInstanceUID, sagittal[0].SeriesInstanceUID


def test_default_series_is_largest_axial_non_localizer_and_is_reported(tmp_path):
    folder, axial_uid, sagittal_uid = several_series(tmp_path)
    study = load_study(folder)
    assert study.metadata.series_uid == axial_uid
    assert any("3 series found" in w and "axial T1" in w for w in study.metadata.warnings)
    assert load_study(folder, series_uid=sagittal_uid).metadata.series_description == "sag T2"
    with pytest.raises(StudyReadError, match="no series with SeriesInstanceUID '1.2.3'.*axial T1"):
        load_study(folder, series_uid="1.2.3")
    infos = {i.description: i for i in list_series(folder)}
    assert infos["axial T1"].orientation == "axial" and infos["sag T2"].orientation == "sagittal"
    assert infos["scan"].is_localizer and not infos["axial T1"].is_localizer
    assert (infos["sag T2"].n_files, infos["sag T2"].n_slices) == (14, 14)


def test_inspect_source_is_json_and_free_of_phi(tmp_path):
    folder, axial_uid, _ = several_series(tmp_path)
    summary = inspect_source(folder)
    text = json.dumps(summary)
    for value in PATIENT.values():
        assert value not in text
    assert summary["chosen_series_uid"] == axial_uid
    assert summary["shape"] == [8, 8, 10] and summary["orientation"] == ["R", "A", "S"]
    assert len(summary["series"]) == 3


def test_phi_is_kept_apart_and_never_printed(tmp_path):
    write_datasets(tmp_path, series_datasets(np.zeros((2, 4, 4), np.int16), iop=AXIAL))
    study = load_study(tmp_path)
    assert study.metadata.phi["PatientName"] == PATIENT["PatientName"]
    for text in (repr(study), str(study), repr(study.metadata), json.dumps(study.metadata.to_dict())):
        assert PATIENT["PatientName"] not in text and PATIENT["PatientID"] not in text
    assert study.metadata.to_dict(include_phi=True)["phi"]["PatientID"] == PATIENT["PatientID"]


def test_minority_orientation_and_localizers_are_dropped(tmp_path):
    datasets = series_datasets(np.zeros((8, 4, 4), np.int16), iop=AXIAL)
    uid = datasets[0].SeriesInstanceUID
    odd = series_datasets(np.zeros((2, 4, 4), np.int16), iop=SAGITTAL, series_uid=uid)
    loc = series_datasets(np.zeros((1, 4, 4), np.int16), iop=AXIAL, series_uid=uid, origin=(0, 0, 50),
                          image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))  # fmt: skip
    write_datasets(tmp_path, datasets + odd + loc)
    study = load_study(tmp_path)
    assert study.array.shape == (4, 4, 8)
    text = " ".join(study.metadata.warnings)
    assert "orientation differs" in text and "localizer" in text


def test_series_mixing_image_sizes_raises(tmp_path):
    datasets = series_datasets(np.zeros((3, 4, 4), np.int16), iop=AXIAL)
    uid = datasets[0].SeriesInstanceUID
    other = series_datasets(np.zeros((2, 8, 8), np.int16), iop=AXIAL, series_uid=uid, origin=(0, 0, 10))
    write_datasets(tmp_path, datasets + other)
    with pytest.raises(StudyReadError, match="mixes images of different sizes"):
        load_study(tmp_path)


def test_in_memory_upload_and_nested_zip_match_the_folder(tmp_path):
    import io
    import zipfile

    datasets = series_datasets(np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7), iop=oblique_iop())
    paths = write_datasets(tmp_path / "series", datasets)
    reference = load_study(tmp_path / "series")
    np.testing.assert_array_equal(load_study([str(p) for p in reversed(paths)]).array, reference.array)
    pairs = [(f"C:\\client\\dir\\{k}.dcm", to_bytes(ds)) for k, ds in enumerate(shuffled(datasets, 5))]
    from_pairs = load_study(pairs)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, (_, data) in enumerate(pairs):
            zf.writestr(f"patient/study/series/{k}", data)
        zf.writestr("patient/README.txt", "not an image")
    from_zip = load_study(buffer.getvalue())
    for study in (from_pairs, from_zip):
        np.testing.assert_array_equal(study.array, reference.array)
        np.testing.assert_allclose(study.affine, reference.affine)
    assert any("README.txt" in w for w in from_zip.metadata.warnings)


def enhanced_mr(tmp_path) -> tuple[np.ndarray, list[float], list[int]]:
    """An Enhanced MR multi-frame file: frames stored in shuffled spatial order, a slope per frame."""
    n, rows, cols = 4, 6, 5
    order = [2, 0, 3, 1]  # spatial slice held by each frame
    slopes = [1.0, 2.0, 0.5, 4.0]
    stored = np.stack([np.full((rows, cols), 10 * (k + 1), np.uint16) for k in range(n)])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "MR", generate_uid(), generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.NumberOfFrames, ds.Rows, ds.Columns = n, rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = list(SAGITTAL)
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 2.0
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for frame, slice_index in enumerate(order):
        item, position, rescale, content = Dataset(), Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [2.0 * slice_index, 0.0, 0.0]  # sagittal normal is +x (L)
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = slopes[frame], 0, "US"
        content.InStackPositionNumber = slice_index + 1
        item.PlanePositionSequence = Sequence([position])
        item.PixelValueTransformationSequence = Sequence([rescale])
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = stored.tobytes()
    (tmp_path / "enhanced.dcm").write_bytes(to_bytes(ds))
    return stored, slopes, order


def test_enhanced_multiframe_uses_per_frame_groups(tmp_path):
    stored, slopes, order = enhanced_mr(tmp_path)
    study = load_study(tmp_path / "enhanced.dcm")
    # the +L slice axis becomes -R after canonical reorientation: slices in R order are reversed positions
    by_position = {order[f]: float(stored[f, 0, 0]) * slopes[f] for f in range(4)}
    assert study.is_volume and study.array.shape[0] == 4
    along_r = [float(study.array[i, 0, 0]) for i in range(4)]
    assert along_r == [by_position[k] for k in reversed(range(4))]
    assert study.spacing == pytest.approx((2.0, 0.5, 0.5))


def test_missing_decoder_names_the_transfer_syntax_and_package(monkeypatch):
    class NoPlugin:
        is_available = False

    monkeypatch.setattr(dicom_pixels, "get_decoder", lambda uid: NoPlugin())
    with pytest.raises(UnsupportedStudyError, match=r"x\.dcm: .*JPEG Lossless.*install python-gdcm"):
        dicom_pixels.check_decodable("x.dcm", JPEGLosslessSV1)


def test_incomplete_time_series_is_explained(tmp_path):
    time_series(tmp_path, None)
    files = sorted(tmp_path.iterdir())
    for path in files:  # drop two slices of the last time point
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.AcquisitionTime.startswith("120002") and float(ds.ImagePositionPatient[2]) < 2:
            path.unlink()
    with pytest.raises(StudyReadError, match="incomplete time series: 3 of 5 slice positions hold 3 images"):
        load_study(tmp_path)
