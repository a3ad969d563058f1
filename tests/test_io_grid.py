"""`Study.grid` maps the canonical RAS array back onto the input's own voxels; `Study.series` lists the
source's series; `list_series` reads headers only. The oracle is the file itself as nibabel / the stored
DICOM pixels give it, never kdmed's own reorientation."""

from __future__ import annotations

import json
import random

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations
from PIL import Image, ImageFile

from kdmed.errors import StudyReadError
from kdmed.io import InputGrid, list_series, load_study
from kdmed.io.build import volume_study
from kdmed.io.study import StudyMetadata
from kdmed.io.synthetic import PATIENT, series_datasets, write_datasets

LPS = np.diag([-2.0, -3.0, 4.0, 1.0])
SLA = np.array([[0.0, -2.0, 0.0, 5.0], [0.0, 0.0, 3.0, -7.0], [4.0, 0.0, 0.0, 1.0], [0, 0, 0, 1]])
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def unique_values(shape: tuple[int, ...]) -> np.ndarray:
    """Every voxel a distinct value, so a slice is identified by the values it holds."""
    return np.random.default_rng(0).permutation(int(np.prod(shape))).reshape(shape).astype(np.int16)


def slice_values(array: np.ndarray, axis: int, k: int) -> list[float]:
    return sorted(np.take(array, k, axis=axis).ravel().tolist())


def assert_slices_map(grid: InputGrid, canonical: np.ndarray, original: np.ndarray) -> None:
    """Canonical slice k along each axis holds exactly the voxels of input slice `grid.index(...)`."""
    for axis in range(3):
        n = canonical.shape[axis]
        for k in range(n):
            input_axis, input_index = grid.index(axis, k, n)
            assert slice_values(canonical, axis, k) == slice_values(original, input_axis, input_index)


# ---------------------------------------------------------------- NIfTI


@pytest.mark.parametrize(("affine", "codes"), [(LPS, "LPS"), (SLA, "SLA"), (np.eye(4), "RAS")])
def test_nifti_grid_gives_back_the_file_array(tmp_path, affine, codes):
    data = unique_values((2, 3, 4))
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "x.nii.gz")
    study = load_study(tmp_path / "x.nii.gz")
    on_disk = nib.load(tmp_path / "x.nii.gz")
    grid = study.grid
    assert grid is not None and grid.shape == on_disk.shape == (2, 3, 4)
    assert grid.orientation == codes and grid.instance_numbers is None
    np.testing.assert_array_equal(grid.affine, on_disk.affine)
    back = grid.array(study.array)
    assert back.shape == on_disk.shape
    np.testing.assert_array_equal(back, np.asanyarray(on_disk.dataobj).astype(np.float32))
    assert_slices_map(grid, study.array, data)
    if codes != "RAS":
        assert study.array.shape != data.shape or not np.array_equal(study.array, data)
    json.dumps(grid.to_dict())
    assert grid.to_dict()["orientation"] == codes and grid.to_dict()["shape"] == [2, 3, 4]


def test_2d_and_4d_nifti_grids_have_the_file_spatial_shape(tmp_path):
    flat = unique_values((5, 6))
    nib.save(nib.Nifti1Image(flat, LPS), tmp_path / "flat.nii")
    study = load_study(tmp_path / "flat.nii")
    assert study.array.shape == (5, 6, 1) and study.grid.shape == (5, 6)
    np.testing.assert_array_equal(study.grid.array(study.array), flat.astype(np.float32))

    series = unique_values((3, 4, 2, 3))
    nib.save(nib.Nifti1Image(series, SLA), tmp_path / "t.nii.gz")
    study = load_study(tmp_path / "t.nii.gz", volume_index=2)
    assert study.grid.shape == (3, 4, 2)
    np.testing.assert_array_equal(study.grid.array(study.array), series[..., 2].astype(np.float32))


def test_grid_that_does_not_fit_the_volume_is_refused():
    meta = StudyMetadata(source_kind="nifti")
    with pytest.raises(StudyReadError, match=r"\(3, 2, 4\).*\(2, 3, 4\)"):
        volume_study("x.nii", np.zeros((2, 3, 4)), np.eye(4), meta, input_shape=(3, 2, 4))
    with pytest.raises(StudyReadError, match="3 InstanceNumbers for 4 slices"):
        volume_study("x.dcm", np.zeros((2, 3, 4)), np.eye(4), meta, instance_numbers=(1, 2, 3))


# ---------------------------------------------------------------- DICOM


@pytest.mark.parametrize("iop", [AXIAL, SAGITTAL])
def test_dicom_grid_keeps_stacking_order_and_instance_numbers(tmp_path, iop):
    stored = unique_values((6, 4, 5))  # (slices, rows, columns)
    numbers = [3, 6, 1, 5, 2, 4]  # slice k (k-th along the normal) has InstanceNumber numbers[k]
    datasets = series_datasets(stored, iop=iop, instance_numbers=numbers, slice_spacing=2.0)
    files = list(datasets)
    random.Random(5).shuffle(files)
    write_datasets(tmp_path, files)
    study = load_study(tmp_path)
    grid = study.grid
    raw = stored.transpose(2, 1, 0)  # (column, row, slice in position order)
    assert grid.shape == raw.shape and grid.instance_numbers == tuple(numbers)
    np.testing.assert_array_equal(grid.array(study.array), raw.astype(np.float32))
    assert grid.orientation == "".join(orientations.aff2axcodes(grid.affine))
    assert_slices_map(grid, study.array, raw)
    slice_axis = next(a for a in range(3) if grid.index(a, 0, study.array.shape[a])[0] == 2)
    n = study.array.shape[slice_axis]
    for k in range(n):
        j = grid.index(slice_axis, k, n)[1]
        assert slice_values(study.array, slice_axis, k) == sorted(stored[j].ravel().tolist())
        assert grid.instance_numbers[j] == numbers[j]
    text = repr(study) + json.dumps(grid.to_dict()) + json.dumps([s.to_dict() for s in study.series])
    assert not any(value in text for value in PATIENT.values())


def test_study_series_lists_every_dicom_series(tmp_path):
    axial = series_datasets(np.ones((5, 4, 4), np.int16), iop=AXIAL, series_number=2, description="ax")
    sag = series_datasets(np.ones((3, 4, 4), np.int16), iop=SAGITTAL, series_number=1, description="sag")
    write_datasets(tmp_path, axial + sag)
    study = load_study(tmp_path)
    assert [s.description for s in study.series] == ["sag", "ax"]  # by SeriesNumber, as list_series
    assert [s.to_dict() for s in study.series] == [s.to_dict() for s in list_series(tmp_path)]
    assert study.metadata.series_uid in {s.uid for s in study.series}
    other = load_study(tmp_path, series_uid=sag[0].SeriesInstanceUID)
    assert other.series == study.series and other.grid.shape == (4, 4, 3)


# ---------------------------------------------------------------- headers only


def refuse(*_args, **_kwargs):
    raise AssertionError("voxel data was read")


def test_list_series_reads_only_the_nifti_header(tmp_path, monkeypatch):
    data = unique_values((3, 4, 5, 2))
    img = nib.Nifti1Image(data, SLA)
    img.header["descrip"] = b"T1 demo"
    nib.save(img, tmp_path / "x.nii.gz")
    monkeypatch.setattr("kdmed.io.nifti._read_volume", refuse)
    monkeypatch.setattr(nib.Nifti1Image, "dataobj", property(refuse))
    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", refuse)
    (info,) = list_series(tmp_path / "x.nii.gz")
    assert (info.rows, info.columns, info.n_slices, info.n_volumes) == (3, 4, 5, 2)
    assert info.description == "T1 demo" and info.n_files == 1
    with pytest.raises(StudyReadError, match="voxel data was read"):
        load_study(tmp_path / "x.nii.gz")  # the patch does bite when voxels are read


def test_list_series_reads_only_the_image_header(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((7, 11), np.uint8)).save(tmp_path / "x.png")
    pages = [Image.fromarray(np.zeros((3, 9), np.uint16)) for _ in range(3)]
    pages[0].save(tmp_path / "p.tif", save_all=True, append_images=pages[1:])
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)
    (info,) = list_series(tmp_path / "x.png")
    assert (info.rows, info.columns, info.n_slices, info.n_volumes) == (7, 11, 1, 1)
    (info,) = list_series(tmp_path / "p.tif")
    assert (info.rows, info.columns, info.n_volumes) == (3, 9, 3)
    with pytest.raises(StudyReadError, match="voxel data was read"):
        load_study(tmp_path / "x.png")


def test_single_file_studies_carry_their_one_series(tmp_path):
    nib.save(nib.Nifti1Image(unique_values((2, 3, 4)), LPS), tmp_path / "x.nii")
    study = load_study(tmp_path / "x.nii")
    assert study.series == tuple(list_series(tmp_path / "x.nii"))
    assert (study.series[0].rows, study.series[0].columns, study.series[0].n_slices) == (2, 3, 4)
    Image.fromarray(np.zeros((7, 11, 3), np.uint8)).save(tmp_path / "x.png")
    image = load_study(tmp_path / "x.png")
    assert image.grid is None and image.series == tuple(list_series(tmp_path / "x.png"))
    assert (image.series[0].rows, image.series[0].columns) == (7, 11)
