"""Real GE and Siemens series (dcm_qa_nih) against their dcm2niix conversions, the oracle.

GE: 4D EPI, 15 slice positions x 10 time points in classic single-frame files with no temporal tag (time
points are repeats of every position). Siemens: mosaics (5 slices tiled in a 216x216 frame) x 2 volumes.
Every volume must hold the same voxel values as the reference once both are in canonical RAS, and the same
affine within 1e-3 mm. References are matched by (manufacturer, SeriesNumber) from the JSON sidecars.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from kdmed.io import list_series, load_study

pytestmark = pytest.mark.realdata

# One GE series in the fast tier; the other three (12 s each: 150 single-frame files) in the slow tier.
SERIES = (
    ["20180918GE/mr_0004"]
    + [pytest.param(f"20180918GE/mr_000{n}", marks=pytest.mark.slow) for n in (5, 6, 7)]
    + [f"20180918Si/mr_000{n}" for n in (3, 4, 5, 6)]
)


@pytest.fixture(scope="module")
def qa(shared_data):
    root = shared_data / "dicom" / "dcm_qa_nih"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    refs = {}
    for sidecar in (root / "Ref").glob("*.json"):
        meta = json.loads(sidecar.read_text())
        refs[(meta["Manufacturer"][:2], meta["SeriesNumber"])] = sidecar.with_suffix(".nii")
    return root / "In", refs


@pytest.mark.parametrize("series", SERIES)
def test_every_volume_matches_dcm2niix(qa, series):
    folder, refs = qa
    first = load_study(folder / series)
    maker = "GE" if "GE" in series else "Si"
    ref = nib.load(refs[(maker, first.metadata.series_number)])
    n_volumes = ref.shape[3]
    assert first.metadata.n_volumes == n_volumes == (10 if maker == "GE" else 2)
    for t in range(n_volumes):
        study = first if t == 0 else load_study(folder / series, volume_index=t)
        expected = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(ref.dataobj[..., t]), ref.affine))
        assert study.array.shape == expected.shape
        np.testing.assert_array_equal(study.array, np.asarray(expected.dataobj, dtype=np.float32))
        np.testing.assert_allclose(study.affine, expected.affine, atol=1e-3)
        assert study.metadata.volume_index == t and study.metadata.orientation == ("R", "A", "S")


@pytest.mark.slow
def test_study_folder_lists_every_series_and_picks_one(qa):
    folder, _ = qa
    infos = list_series(folder / "20180918GE")
    assert [i.number for i in infos] == [4, 5, 6, 7]
    assert all((i.n_slices, i.n_volumes, i.orientation) == (15, 10, "axial") for i in infos)
    study = load_study(folder / "20180918GE")
    assert study.metadata.series_number == 4  # ties broken by the lowest series number
    assert any("4 series found" in w for w in study.metadata.warnings)
    mosaics = list_series(folder / "20180918Si")
    assert all((i.n_files, i.n_slices, i.n_volumes) == (2, 5, 2) for i in mosaics)
