"""Enhanced (and other multi-frame) DICOM -> one `Frame` per frame, from the functional groups.

Per PS3.3 C.7.6.16, each frame's attributes live in its item of PerFrameFunctionalGroupsSequence, or, when
identical for all frames, in the single item of SharedFunctionalGroupsSequence; the per-frame item wins.
Geometry comes from PlanePositionSequence (IPP), PlaneOrientationSequence (IOP) and PixelMeasuresSequence
(PixelSpacing, SliceThickness, SpacingBetweenSlices); the modality rescale from
PixelValueTransformationSequence (per frame: Philips varies it); the window from FrameVOILUTSequence;
time from FrameContentSequence (TemporalPositionIndex, FrameAcquisitionDateTime). Multi-frame files without
functional groups (US cine, NM, stripped enhanced files) fall back to the top-level attributes.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from kdmed.io.dicom_pixels import first_number
from kdmed.io.dicom_records import (
    DicomFile,
    Frame,
    as_int,
    classic_frame,
    gap,
    seconds,
    vector,
)
from kdmed.io.header_checks import dicom_plane

_FRAME_TYPE_SEQUENCES = ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence")


def enhanced_frames(f: DicomFile, ds: Dataset, n_frames: int) -> list[Frame]:
    base = classic_frame(f, ds, 0)
    shared = _first_item(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    frames = []
    for index in range(n_frames):
        own = per_frame[index] if index < len(per_frame) else None
        frames.append(_frame(f, base, index, own, shared))
    if per_frame and len(per_frame) != n_frames:
        # a mismatch means the per-frame geometry cannot be trusted: keep the frames as 2D images
        for frame in frames:
            frame.iop = frame.ipp = None
    return frames


def _frame(f: DicomFile, base: Frame, index: int, own: Dataset | None, shared: Dataset | None) -> Frame:
    def group(keyword: str) -> Dataset | None:
        for source in (own, shared):
            if source is not None and keyword in source:
                item = _first_item(source.get(keyword))
                if item is not None:
                    return item
        return None

    position, orientation = group("PlanePositionSequence"), group("PlaneOrientationSequence")
    measures, rescale = group("PixelMeasuresSequence"), group("PixelValueTransformationSequence")
    voi, content = group("FrameVOILUTSequence"), group("FrameContentSequence")
    frame_type = next((g for g in map(group, _FRAME_TYPE_SEQUENCES) if g is not None), None)
    for item, what in ((position, "PlanePosition"), (orientation, "PlaneOrientation"), (measures, "PixelMeasures"),
                       (rescale, "PixelValueTransformation")):  # fmt: skip
        if item is not None:
            dicom_plane(f.item.name, item, prefix=f"frame {index + 1} {what} ")

    ipp = vector(position.get("ImagePositionPatient"), 3) if position is not None else base.ipp
    iop = vector(orientation.get("ImageOrientationPatient"), 6) if orientation is not None else base.iop
    spacing = vector(measures.get("PixelSpacing"), 2) if measures is not None else None
    slope = first_number(rescale.get("RescaleSlope")) if rescale is not None else None
    intercept = first_number(rescale.get("RescaleIntercept")) if rescale is not None else None
    window = _window(voi) if voi is not None else base.window
    temporal = as_int(content.get("TemporalPositionIndex")) if content is not None else None
    acquired = _datetime_seconds(content.get("FrameAcquisitionDateTime")) if content is not None else None
    dimension = [float(v) for v in (content.get("DimensionIndexValues") or [])] if content is not None else []
    kinds = [str(v).upper() for v in (frame_type.get("FrameType") or [])] if frame_type is not None else []
    return Frame(
        file=f,
        index=index,
        iop=iop,
        ipp=ipp,
        pixel_spacing=tuple(spacing) if spacing is not None and (spacing > 0).all() else base.pixel_spacing,  # type: ignore[arg-type]
        slope=slope if slope is not None else base.slope,
        intercept=intercept if intercept is not None else base.intercept,
        window=window,
        time_key=(float(temporal or 0), acquired or 0.0, *dimension, float(index)),
        temporal_index=temporal,
        is_localizer=base.is_localizer or "LOCALIZER" in kinds,
        slice_gap=(gap(measures) if measures is not None else None) or base.slice_gap,
    )


def _window(voi: Dataset) -> tuple[float, float] | None:
    center, width = first_number(voi.get("WindowCenter")), first_number(voi.get("WindowWidth"))
    return (center, width) if center is not None and width is not None and width > 0 else None


def _datetime_seconds(value: Any) -> float | None:
    text = str(value or "").strip()
    return seconds(text[:8], text[8:].split("+")[0].split("-")[0]) if len(text) >= 8 else None


def _first_item(sequence: Any) -> Dataset | None:
    try:
        return sequence[0] if sequence is not None and len(sequence) else None
    except (TypeError, IndexError):
        return None
