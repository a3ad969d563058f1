"""Every file of the pydicom conformance set either loads or is refused with a kdmed error saying why.

Refusals are listed below with the reason they must give; any other file must load into a finite float32
array. A raw library exception fails the test. What loads: all uncompressed, big-endian, deflated, RLE,
JPEG-LS, JPEG 2000 and (with python-gdcm installed) JPEG lossless files, the enhanced CT / MR multi-frame
files, and the tiny CT/MR/CR series of the DICOMDIR tree. What is refused and why: see REFUSED.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io import list_series, load_study

pytestmark = pytest.mark.realdata

_ROOT = Path(os.environ.get("KDMED_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TESTFILES = _ROOT / "dicom" / "pydicom_testfiles"

# file name (or folder prefix) -> (error class, text the message must contain)
REFUSED = {
    "JPEG-lossy.dcm": (UnsupportedStudyError, "JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51)"),
    "JPGExtended.dcm": (UnsupportedStudyError, "only pylibjpeg-libjpeg decodes 12-bit JPEG"),
    "MR_truncated.dcm": (StudyReadError, "but the header declares"),
    "no_meta.dcm": (StudyReadError, "without File Meta header, but shifted by 1 stray leading byte"),
    "liver.dcm": (UnsupportedStudyError, "Segmentation"),
    "liver_1frame.dcm": (UnsupportedStudyError, "Segmentation"),
    "DICOMDIR": (UnsupportedStudyError, "DICOMDIR index"),
    "TINY_ALPHA/PT": (StudyReadError, "incomplete DICOM image (CT Image Storage without Rows/Columns)"),
    ".txt": (StudyReadError, "not a supported image format"),
    ".md": (StudyReadError, "not a supported image format"),
    "README": (StudyReadError, "not a supported image format"),
}
if importlib.util.find_spec("gdcm") is None:  # JPEG lossless has no permissive decoder but python-gdcm
    for name in ("JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"):
        REFUSED[name] = (UnsupportedStudyError, "no installed decoder handles it; install python-gdcm")


def _files() -> list:
    if not TESTFILES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{TESTFILES} is absent"))]
    paths = sorted(p for p in TESTFILES.rglob("*") if p.is_file())
    return [pytest.param(p, id=str(p.relative_to(TESTFILES))) for p in paths]


def _expected_refusal(path: Path):
    rel = str(path.relative_to(TESTFILES))
    for key, value in REFUSED.items():
        if path.name == key or path.name.startswith(key) or key in rel or rel.endswith(key):
            return value
    return None


@pytest.mark.parametrize("path", _files())
def test_file_loads_or_is_refused_clearly(path):
    refusal = _expected_refusal(path)
    if refusal is None:
        study = load_study(path)
        assert study.array.dtype == np.float32 and study.array.size > 0
        assert np.isfinite(study.array).all()
        assert study.affine.shape == (4, 4) and np.isfinite(study.affine).all()
        assert study.metadata.source_kind == "dicom"
        return
    error, text = refusal
    with pytest.raises(error) as info:
        load_study(path)
    message = str(info.value)
    assert text in message
    assert path.name in message or path.parent.name in message  # the message names the file


def test_known_values_survive_every_transfer_syntax():
    """MR_small in 8 encodings decodes to identical voxels (lossless syntaxes only)."""
    if not TESTFILES.is_dir():
        pytest.skip(f"{TESTFILES} is absent")
    folder = TESTFILES / "pydicom"
    reference = load_study(folder / "MR_small.dcm").array
    for name in ("implicit", "bigendian", "expb", "RLE", "jp2klossless", "jpeg_ls_lossless", "padded"):
        np.testing.assert_array_equal(load_study(folder / f"MR_small_{name}.dcm").array, reference)
    multi = TESTFILES / "pydicom-data"
    frames = load_study(multi / "emri_small.dcm", volume_index=3).array
    for name in ("RLE", "big_endian", "jpeg_2k_lossless", "jpeg_ls_lossless"):
        other = load_study(multi / f"emri_small_{name}.dcm", volume_index=3)
        np.testing.assert_array_equal(other.array, frames)


def test_enhanced_ct_uses_functional_groups():
    if not TESTFILES.is_dir():
        pytest.skip(f"{TESTFILES} is absent")
    study = load_study(TESTFILES / "pydicom-data" / "eCT_Supplemental.dcm")
    assert study.array.shape == (512, 512, 2)
    assert study.spacing == pytest.approx((0.388672, 0.388672, 10.0), abs=1e-5)
    assert study.metadata.window_center == 49.0 and study.metadata.window_width == 102.0
    assert study.array.min() >= -1024.0  # RescaleIntercept -1024 from PixelValueTransformationSequence


def test_dicomdir_tree_folders():
    if not TESTFILES.is_dir():
        pytest.skip(f"{TESTFILES} is absent")
    tree = TESTFILES / "pydicom" / "dicomdirtests"
    study = load_study([tree / "DICOMDIR", tree / "README.txt", tree / "98892001"])  # indexes are skipped
    assert study.metadata.modality == "CT" and study.array.shape == (16, 16, 5)  # CT5N: 5 slices beat CT2N
    assert any("DICOMDIR index" in w for w in study.metadata.warnings)
    assert any("2 series found" in w for w in study.metadata.warnings)
    assert len(list_series(tree / "98892003" / "MR2")) == 3
    cr = load_study(tree / "77654033" / "CR1")  # MONOCHROME1 radiograph without geometry: a 2D image
    assert not cr.is_volume and cr.metadata.photometric == "MONOCHROME1"
    # TINY_ALPHA's images claim CT Image Storage but were stripped of pixels: the whole tree is refused
    with pytest.raises(StudyReadError, match="IM000000: incomplete DICOM image"):
        load_study(tree)
