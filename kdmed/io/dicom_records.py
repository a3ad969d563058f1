"""DICOM header records: `DicomFile` holding one `Frame` per 2D image, and the classic frame (one image per
file, top-level attributes) that the enhanced multi-frame (`dicom_multiframe`) and mosaic (`mosaic`)
layouts start from. `dicom_frames` chooses the layout; this module depends on none of them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from kdmed.io.dicom_pixels import first_number
from kdmed.io.sources import Item

PHI_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "OtherPatientIDs",
    "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime",
    "AcquisitionDate", "ContentDate", "StationName", "DeviceSerialNumber",
)  # fmt: skip


@dataclass
class Frame:
    """One 2D image inside a DICOM file, with everything needed to place it and scale its values."""

    file: DicomFile
    index: int  # frame number in the file's pixel data, or tile number in a mosaic
    iop: np.ndarray | None
    ipp: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None
    time_key: tuple[float, ...] = ()
    temporal_index: int | None = None  # explicit time-point number when the header has one
    is_localizer: bool = False
    slice_gap: float | None = None  # SpacingBetweenSlices or SliceThickness, for a single-slice volume


@dataclass
class DicomFile:
    item: Item
    series_uid: str
    series_number: int | None
    description: str | None
    modality: str | None
    photometric: str
    rows: int
    columns: int
    samples_per_pixel: int
    sop_uid: str | None
    instance: int
    stored_range: tuple[float, float]
    modality_lut: bool = False
    mosaic_tiles: tuple[int, int, int] | None = None  # (n images, tile rows, tile columns)
    frames: list[Frame] = field(default_factory=list)
    phi: dict[str, str] = field(default_factory=dict)


def classic_frame(f: DicomFile, ds: Dataset, index: int) -> Frame:
    iop = vector(ds.get("ImageOrientationPatient"), 6)
    ipp = vector(ds.get("ImagePositionPatient"), 3)
    spacing = vector(ds.get("PixelSpacing"), 2)
    if spacing is None:
        spacing = vector(ds.get("ImagerPixelSpacing"), 2)
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    acq = seconds(ds.get("AcquisitionDate"), ds.get("AcquisitionTime")) or seconds(
        None, ds.get("ContentTime")
    )
    return Frame(
        file=f,
        index=index,
        iop=iop,
        ipp=ipp,
        pixel_spacing=tuple(spacing) if spacing is not None and (spacing > 0).all() else None,  # type: ignore[arg-type]
        slope=first_number(ds.get("RescaleSlope")) or 1.0,
        intercept=first_number(ds.get("RescaleIntercept")) or 0.0,
        window=window(ds),
        time_key=(
            float(as_int(ds.get("TemporalPositionIdentifier")) or 0),
            first_number(ds.get("TriggerTime")) or 0.0,
            acq or 0.0,
            float(as_int(ds.get("AcquisitionNumber")) or 0),
            float(as_int(ds.get("EchoNumbers")) or 0),
            float(f.instance),
        ),
        temporal_index=as_int(ds.get("TemporalPositionIdentifier")),
        is_localizer="LOCALIZER" in image_type,
        slice_gap=gap(ds),
    )


def window(ds: Dataset) -> tuple[float, float] | None:
    center, width = first_number(ds.get("WindowCenter")), first_number(ds.get("WindowWidth"))
    return (center, width) if center is not None and width is not None and width > 0 else None


def phi_fields(ds: Dataset) -> dict[str, str]:
    out = {}
    for keyword in PHI_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, ""):
            out[keyword] = str(value)
    return out


def seconds(date: Any, time: Any) -> float | None:
    """DA + TM (either may be missing) as seconds, for ordering time points; None when unparsable."""
    total = 0.0
    if date:
        with contextlib.suppress(ValueError):
            day = dt.date(int(str(date)[:4]), int(str(date)[4:6]), int(str(date)[6:8]))
            total += day.toordinal() * 86400.0
    text = str(time or "").strip().replace(":", "")
    if not text:
        return total or None
    try:
        hh, mm = int(text[:2]), int(text[2:4] or 0)
        ss = float(text[4:] or 0)
    except ValueError:
        return total or None
    return total + hh * 3600 + mm * 60 + ss


def gap(ds: Any) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = first_number(ds.get(keyword))
        if value:
            return abs(value)
    return None


def vector(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def as_int(value: Any) -> int | None:
    number = first_number(value)
    return int(number) if number is not None else None


def as_text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None
