"""Seed files for the reader fuzzer: small valid studies made by kdmed's own code, plus real files.

The generated seeds cover every route of `load_study`: classic and enhanced multi-frame DICOM, uncompressed
and compressed (RLE, JPEG-LS, JPEG 2000, JPEG baseline), NIfTI-1 and NIfTI-2 (plain and gzipped), and PNG,
JPEG, TIFF and BMP images. They are deterministic (fixed pixel patterns, fixed UIDs), so a corpus built
from them is the same on every machine. `shared_seeds` adds real files from `../shared/data` when present.
"""

from __future__ import annotations

import gzip
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from pydicom import uid as uids
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from kdmed.io.synthetic import slice_dataset, to_bytes

FAMILIES = ("dicom", "nifti", "image")
_STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
_SERIES_UID = "1.2.826.0.1.3680043.8.498.2"
_MAX_SHARED_BYTES = 4 * 1024**2  # real seeds above this are skipped: each mutation would be slow to load


@dataclass(frozen=True)
class Seed:
    name: str
    family: str  # one of FAMILIES
    data: bytes


def _pattern(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    return ((x * 37 + y * 11) % 4096).astype(np.uint16)


def _classic(rows: int = 24, cols: int = 20, **extra) -> Dataset:
    ds = slice_dataset(
        _pattern(rows, cols),
        ipp=(0.0, 0.0, 0.0),
        iop=(1, 0, 0, 0, 1, 0),
        pixel_spacing=(0.9, 0.8),
        series_uid=_SERIES_UID,
        study_uid=_STUDY_UID,
        instance=1,
        slope=1.0,
        intercept=-10.0,
        window=(400.0, 800.0),
    )
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def _multiframe(frames: int = 4) -> Dataset:
    ds = _classic()
    stack = np.stack([_pattern(24, 20) + k for k in range(frames)]).astype(np.uint16)
    ds.NumberOfFrames = frames
    ds.PixelData = stack.tobytes()
    return ds


def _compressed(ds: Dataset, syntax: uids.UID) -> bytes | None:
    """`ds` re-encoded with pydicom's encoders; None when no installed plugin encodes `syntax`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.compress(syntax)
    except Exception:  # an encoder missing on this machine: that seed is simply not made
        return None
    return to_bytes(ds)


def _jpeg_baseline() -> bytes:
    """An 8-bit JPEG baseline DICOM (decoded by GDCM): Pillow's JPEG encapsulated as one fragment."""
    ds = _classic(32, 32)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    grey = (_pattern(32, 32) % 256).astype(np.uint8)
    ds.PixelData = encapsulate([_image_bytes(grey, "JPEG", quality=95)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uids.JPEGBaseline8Bit
    return to_bytes(ds)


def dicom_seeds() -> Iterator[Seed]:
    yield Seed("classic.dcm", "dicom", to_bytes(_classic()))
    yield Seed("multiframe.dcm", "dicom", to_bytes(_multiframe()))
    rgb = _classic()
    rgb.SamplesPerPixel, rgb.PhotometricInterpretation, rgb.PlanarConfiguration = 3, "RGB", 0
    rgb.BitsAllocated, rgb.BitsStored, rgb.HighBit, rgb.PixelRepresentation = 8, 8, 7, 0
    rgb.PixelData = (np.arange(24 * 20 * 3) % 256).astype(np.uint8).tobytes()
    yield Seed("rgb.dcm", "dicom", to_bytes(rgb))
    for syntax, name in (
        (uids.RLELossless, "rle"),
        (uids.JPEGLSLossless, "jpegls"),
        (uids.JPEG2000Lossless, "j2k"),  # OpenJPEG needs 64 x 64 for its default resolution levels
    ):
        data = _compressed(_classic(64, 64), syntax)
        if data is not None:
            yield Seed(f"{name}.dcm", "dicom", data)
    yield Seed("jpeg_baseline.dcm", "dicom", _jpeg_baseline())
    deflated = _classic()
    deflated.file_meta.TransferSyntaxUID = uids.DeflatedExplicitVRLittleEndian
    yield Seed("deflated.dcm", "dicom", to_bytes(deflated))
    data = _compressed(_multiframe(), uids.RLELossless)
    if data is not None:
        yield Seed("rle_multiframe.dcm", "dicom", data)


def _nifti_bytes(image: nib.Nifti1Image | nib.Nifti2Image, gz: bool) -> bytes:
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def nifti_seeds() -> Iterator[Seed]:
    volume = (np.arange(12 * 10 * 8, dtype=np.float32).reshape(12, 10, 8) % 97) / 97
    affine = np.diag([1.2, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-7.0, -5.0, -8.0)
    one = nib.Nifti1Image(volume, affine)
    one.header.set_qform(affine, code=1)
    yield Seed("volume.nii", "nifti", _nifti_bytes(one, gz=False))
    yield Seed("volume.nii.gz", "nifti", _nifti_bytes(one, gz=True))
    yield Seed("volume2.nii", "nifti", _nifti_bytes(nib.Nifti2Image(volume, affine), gz=False))
    series = np.stack([volume, 1 - volume], axis=-1).astype(np.int16)
    yield Seed("series4d.nii.gz", "nifti", _nifti_bytes(nib.Nifti1Image(series, affine), gz=True))


def _image_bytes(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def image_seeds() -> Iterator[Seed]:
    y, x = np.mgrid[0:30, 0:28]
    grey = ((x * 9 + y * 5) % 256).astype(np.uint8)
    rgb = np.stack([grey, 255 - grey, (grey // 2)], axis=-1).astype(np.uint8)
    yield Seed("grey.png", "image", _image_bytes(grey, "PNG"))
    yield Seed("rgb.png", "image", _image_bytes(rgb, "PNG"))
    yield Seed("grey16.png", "image", _image_bytes((grey.astype(np.uint16) * 200), "PNG"))
    yield Seed("rgb.jpg", "image", _image_bytes(rgb, "JPEG", quality=90))
    yield Seed("grey.tif", "image", _image_bytes(grey, "TIFF"))
    yield Seed("rgb.bmp", "image", _image_bytes(rgb, "BMP"))


def synthetic_seeds() -> list[Seed]:
    """Every generated seed (those whose encoder is not installed are left out)."""
    return [*dicom_seeds(), *nifti_seeds(), *image_seeds()]


def _family(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")):
        return "image"
    if name.endswith(".dcm") or (path.suffix == "" and path.parent.name.upper().startswith("SE")):
        return "dicom"
    return None


def shared_seeds(root: Path, per_family: int, rng: np.random.Generator) -> list[Seed]:
    """Up to `per_family` real files of each family under `root` (no larger than 4 MiB), chosen by `rng`."""
    found: dict[str, list[Path]] = {family: [] for family in FAMILIES}
    for folder in ("dicom", "nifti", "brain_mri_2d", "wbc", "wbc_pbc", "oct2017"):
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            family = _family(path) if path.is_file() else None
            if family and path.stat().st_size <= _MAX_SHARED_BYTES:
                found[family].append(path)
    seeds = []
    for family, paths in found.items():
        if not paths:
            continue
        picks = rng.choice(len(paths), size=min(per_family, len(paths)), replace=False)
        for k in sorted(int(p) for p in picks):
            path = paths[k]
            seeds.append(Seed(str(path.relative_to(root)), family, path.read_bytes()))
    return seeds
