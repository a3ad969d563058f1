"""Write small synthetic DICOM series with known geometry and values (tests, benchmarks, demos).

Every value the reader must recover is chosen by the caller: stored pixels, rescale slope/intercept,
photometric interpretation, orientation (any, oblique included), slice positions and InstanceNumbers (which
may be shuffled on purpose: a correct reader ignores them for ordering). Nothing here reads real data.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

PATIENT = {"PatientName": "Synthetic^Patient", "PatientID": "KDMED-0001", "PatientBirthDate": "19700101"}


def slice_dataset(
    stored: np.ndarray,
    *,
    ipp: Sequence[float],
    iop: Sequence[float],
    pixel_spacing: tuple[float, float],
    series_uid: str,
    study_uid: str,
    instance: int,
    slope: float = 1.0,
    intercept: float = 0.0,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    series_number: int = 1,
    description: str = "synthetic",
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """One classic single-frame MR slice holding `stored` (rows, cols) as 16-bit integers."""
    stored = np.asarray(stored)
    if stored.dtype not in (np.int16, np.uint16):
        raise ValueError(f"stored pixels must be int16 or uint16, got {stored.dtype}")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    ds.StudyDate = "20240102"
    ds.InstitutionName = "Synthetic Hospital"
    ds.Modality = "MR"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
    ds.PixelSpacing = [f"{pixel_spacing[0]:.6f}", f"{pixel_spacing[1]:.6f}"]
    ds.SliceThickness = "1.0"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder("<")).tobytes()
    return ds


def series_datasets(
    stored: np.ndarray,
    *,
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    slice_spacing: float = 1.0,
    instance_numbers: Sequence[int] | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    **kwargs: Any,
) -> list[Dataset]:
    """`stored` (slices, rows, cols): slice k sits at origin + k * slice_spacing * cross(row, col)."""
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    numbers = list(instance_numbers) if instance_numbers is not None else list(range(1, len(stored) + 1))
    return [
        slice_dataset(
            stored[k],
            ipp=np.asarray(origin, float) + k * slice_spacing * normal,
            iop=iop,
            pixel_spacing=pixel_spacing,
            series_uid=series_uid,
            study_uid=study_uid,
            instance=numbers[k],
            **kwargs,
        )
        for k in range(len(stored))
    ]


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_datasets(directory: Path, datasets: Sequence[Dataset], prefix: str = "IM") -> list[Path]:
    """Save each data set as a Part 10 file; file names follow list order, not slice order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, ds in enumerate(datasets):
        path = directory / f"{prefix}{k:05d}"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths
