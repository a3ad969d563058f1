"""DICOM headers -> `DicomFile` records holding one `Frame` per 2D image, whatever the file layout.

Classic files give one frame each, enhanced multi-frame files one per frame (functional groups, see
`dicom_multiframe`), Siemens mosaics one per tile (see `mosaic`). Everything downstream (grouping, sorting,
4D detection, affine) works on frames only, so the three layouts share one volume builder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io.dicom_pixels import (
    check_deflated_size,
    first_number,
    read_dataset,
    stored_range,
    transfer_syntax,
)
from kdmed.io.guard import reading
from kdmed.io.header_checks import dicom_pixel_module, dicom_plane
from kdmed.io.limits import ReadLimits
from kdmed.io.sources import Item

_PHI_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "OtherPatientIDs",
    "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime",
    "AcquisitionDate", "ContentDate", "StationName", "DeviceSerialNumber",
)  # fmt: skip
_DIRECTORY_SOP = "1.2.840.10008.1.3.10"
_SEGMENTATION_SOP = "1.2.840.10008.5.1.4.1.1.66.4"


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


class NotAnImage(Exception):
    """A valid DICOM object that holds no image to load (DICOMDIR, report, RT plan...): skipped in folders."""


def read_header(item: Item, limits: ReadLimits) -> DicomFile:
    """Parse one file's header; raises `NotAnImage` for non-image objects, `StudyReadError` for bad files.

    Declared sizes and geometry are checked (`header_checks`) before any Frame is built, so a header that
    declares 2**31 frames or 1e308 cosines is refused before it costs memory or time."""
    check_deflated_size(item, limits)
    ds = read_dataset(item, pixels=False)
    _refuse_non_images(item.name, ds)
    with reading(item.name, "the DICOM header holds invalid values", "fix or re-export the file"):
        dicom_pixel_module(item.name, ds, limits)
        dicom_plane(item.name, ds)
    with reading(item.name, "the DICOM header holds invalid values", "fix or re-export the file"):
        return _dicom_file(item, ds)


def _refuse_non_images(name: str, ds: Dataset) -> None:
    sop = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", ""))
    if sop == _DIRECTORY_SOP or "DirectoryRecordSequence" in ds:
        raise NotAnImage("a DICOMDIR index (no pixels); load the folder it sits in instead")
    if sop == _SEGMENTATION_SOP:
        raise UnsupportedStudyError(
            f"{name}: this is a DICOM Segmentation object (a label map, not an image to screen); load the "
            "images it refers to instead"
        )
    if not ds.get("Rows") or not ds.get("Columns"):
        if "Image Storage" in UID(sop).name:
            raise StudyReadError(
                f"{name}: incomplete DICOM image ({UID(sop).name} without Rows/Columns): the file is "
                "truncated or was stripped of its image module; export it again"
            )
        raise NotAnImage("a DICOM object without image (no Rows/Columns: report, RT plan, waveform or index)")


def _dicom_file(item: Item, ds: Dataset) -> DicomFile:
    from kdmed.io import dicom_multiframe, mosaic  # local: both build on this module's types

    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip()
    f = DicomFile(
        item=item,
        series_uid=str(ds.get("SeriesInstanceUID", "") or "").strip(),
        series_number=as_int(ds.get("SeriesNumber")),
        description=as_text(ds.get("SeriesDescription")) or as_text(ds.get("ProtocolName")),
        modality=as_text(ds.get("Modality")),
        photometric="RGB" if spp == 3 or photometric == "PALETTE COLOR" else photometric,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        samples_per_pixel=spp,
        sop_uid=as_text(ds.get("SOPInstanceUID")),
        instance=as_int(ds.get("InstanceNumber")) or 0,
        stored_range=stored_range(ds),
        modality_lut="ModalityLUTSequence" in ds and "RescaleSlope" not in ds,
        phi=phi_fields(ds),
    )
    transfer_syntax(ds, item.name)  # validates that the encoding is known
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if mosaic.is_mosaic(ds):
        f.frames = mosaic.mosaic_frames(f, ds, classic_frame(f, ds, 0))
    elif n_frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        f.frames = dicom_multiframe.enhanced_frames(f, ds, n_frames)
    else:
        f.frames = [classic_frame(f, ds, 0)]
    return f


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
    for keyword in _PHI_KEYWORDS:
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
