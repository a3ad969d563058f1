"""Group DICOM files into series, keep the frames that form one volume, and pick a default series.

Series are keyed by SeriesInstanceUID. Inside a series, localisers (ImageType LOCALIZER) are dropped when
other images exist, and so are images whose orientation differs from the majority (a 3-plane scout, a
reformat filed under the same UID). The default series is the largest axial-ish non-localiser one with
patient geometry; the choice and the alternatives are reported so the caller can pass `series_uid`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io.dicom_frames import NotAnImage, read_header
from kdmed.io.dicom_geometry import (
    cluster_positions,
    dominant_axis,
    orientation_label,
    same_orientation,
    slice_normal,
    unit_cosines,
)
from kdmed.io.dicom_records import DicomFile, Frame
from kdmed.io.limits import ReadLimits
from kdmed.io.sources import Item
from kdmed.io.study import SeriesInfo

# scouts are often not flagged in ImageType; their names give them away (used for ranking and listing only)
_LOCALIZER_NAME = re.compile(r"locali[sz]er|scout|survey|pilot|3[- ]?plane", re.IGNORECASE)


@dataclass
class Series:
    uid: str
    files: list[DicomFile] = field(default_factory=list)

    @property
    def number(self) -> int | None:
        return self.files[0].series_number

    @property
    def description(self) -> str | None:
        return self.files[0].description

    @property
    def label(self) -> str:
        number = f"series {self.number}" if self.number is not None else "series"
        text = f" '{self.description}'" if self.description else ""
        return f"{number}{text} (SeriesInstanceUID {self.uid or 'missing'})"


def scan(items: list[Item], source: str, limits: ReadLimits) -> tuple[list[Series], list[str]]:
    """Read every header; non-image DICOM objects are skipped with a note, corrupt files raise.

    Raises `UnsupportedStudyError` when no file holds an image (a DICOMDIR, reports, an RT plan...).
    """
    notes: list[str] = []
    skipped: list[tuple[str, str]] = []
    seen: set[tuple[str, int]] = set()
    by_uid: dict[str, Series] = {}
    duplicates = 0
    for item in items:
        try:
            f = read_header(item, limits)
        except NotAnImage as exc:
            skipped.append((item.name, str(exc)))
            continue
        if f.sop_uid is not None and (f.sop_uid, 0) in seen:
            duplicates += 1
            continue
        seen.add((f.sop_uid or item.name, 0))
        by_uid.setdefault(f.series_uid, Series(f.series_uid)).files.append(f)
    if not by_uid:
        if len(skipped) == 1:
            raise UnsupportedStudyError(f"{skipped[0][0]}: {skipped[0][1]}")
        examples = "; ".join(f"{Path(n).name}: {why}" for n, why in skipped[:2])
        raise UnsupportedStudyError(
            f"{source}: none of the {len(skipped)} DICOM files holds an image ({examples})"
        )
    if skipped:
        examples = "; ".join(f"{Path(n).name}: {why}" for n, why in skipped[:2])
        more = f" and {len(skipped) - 2} more" if len(skipped) > 2 else ""
        notes.append(f"{len(skipped)} DICOM file(s) without image were skipped: {examples}{more}")
    if duplicates:
        notes.append(f"{duplicates} duplicate file(s) (same SOPInstanceUID) were ignored")
    return list(by_uid.values()), notes


def usable_frames(series: Series, *, strict: bool) -> tuple[list[Frame], list[str]]:
    """Frames that can form one volume, and notes on what was dropped.

    With `strict`, a series mixing image sizes raises; otherwise the most common size is kept.
    """
    frames = [fr for f in series.files for fr in f.frames]
    notes: list[str] = []
    if any(not fr.is_localizer for fr in frames) and any(fr.is_localizer for fr in frames):
        n = sum(fr.is_localizer for fr in frames)
        frames = [fr for fr in frames if not fr.is_localizer]
        notes.append(f"{n} localizer image(s) of {series.label} were dropped")
    placed = [fr for fr in frames if has_geometry(fr)]
    if placed and len(placed) < len(frames):
        notes.append(
            f"{len(frames) - len(placed)} image(s) without patient position/orientation were dropped"
        )
        frames = placed
    if placed:
        frames, dropped = _majority_orientation(frames)
        if dropped:
            notes.append(
                f"{dropped} image(s) whose orientation differs from the rest of the series were dropped"
            )
    sizes = Counter(_size_key(fr) for fr in frames)
    if len(sizes) > 1:
        if strict:
            listing = ", ".join(
                f"{r}x{c} px of {_mm(ps)}: {n} image(s)" for (r, c, _, _, ps), n in sizes.most_common()
            )
            raise StudyReadError(
                f"{series.label} mixes images of different sizes or pixel spacings ({listing}): it merges "
                "several acquisitions. Export them as separate series, or pass the files of one acquisition"
            )
        keep = sizes.most_common(1)[0][0]
        frames = [fr for fr in frames if _size_key(fr) == keep]
    return frames, notes


def _size_key(fr: Frame) -> tuple:
    spacing = tuple(round(v, 4) for v in fr.pixel_spacing) if fr.pixel_spacing else None
    return (fr.file.rows, fr.file.columns, fr.file.samples_per_pixel, fr.file.mosaic_tiles, spacing)


def _mm(spacing: tuple[float, ...] | None) -> str:
    return "x".join(f"{v:g}" for v in spacing) + " mm" if spacing else "unknown size"


def has_geometry(frame: Frame) -> bool:
    return frame.iop is not None and frame.ipp is not None and unit_cosines(frame.iop) is not None


def _majority_orientation(frames: list[Frame]) -> tuple[list[Frame], int]:
    groups: list[list[Frame]] = []
    for fr in frames:
        for g in groups:
            if same_orientation(g[0].iop, fr.iop):  # type: ignore[arg-type]
                g.append(fr)
                break
        else:
            groups.append([fr])
    best = max(groups, key=lambda g: (len(g), dominant_axis(g[0].iop) == "axial"))  # type: ignore[arg-type]
    return best, len(frames) - len(best)


def series_info(series: Series) -> SeriesInfo:
    frames, _ = usable_frames(series, strict=False)
    is_localizer = bool(frames) and all(fr.is_localizer for fr in frames)
    is_localizer = is_localizer or bool(_LOCALIZER_NAME.search(series.description or ""))
    orientation, n_slices, n_volumes = None, len(frames), 1
    if frames and has_geometry(frames[0]):
        orientation = orientation_label(frames[0].iop)  # type: ignore[arg-type]
        normal = slice_normal(frames[0].iop)  # type: ignore[arg-type]
        clusters = cluster_positions([float(fr.ipp @ normal) for fr in frames])  # type: ignore[arg-type,operator]
        n_slices = len(clusters)
        n_volumes = max(len(c) for c in clusters)
    elif frames:
        n_slices, n_volumes = 1, len(frames)
    first = series.files[0]
    return SeriesInfo(
        uid=series.uid or None,
        number=series.number,
        description=series.description,
        modality=first.modality,
        n_files=len(series.files),
        n_slices=n_slices,
        n_volumes=n_volumes,
        orientation=orientation,
        is_localizer=is_localizer,
        rows=frames[0].file.rows if frames else first.rows,
        columns=frames[0].file.columns if frames else first.columns,
    )


def choose(series: list[Series], series_uid: str | None, source: str) -> tuple[Series, list[str]]:
    """The requested series, or the default one with a note saying which and how to pick another."""
    if not series:
        raise StudyReadError(
            f"{source}: no DICOM image was found; pass a folder or files holding DICOM images"
        )
    if series_uid is not None:
        for s in series:
            if s.uid == series_uid:
                return s, []
        available = "; ".join(s.label for s in series)
        raise StudyReadError(
            f"{source}: no series with SeriesInstanceUID {series_uid!r}; available: {available}"
        )
    if len(series) == 1:
        return series[0], []
    infos = {id(s): series_info(s) for s in series}

    def rank(s: Series) -> tuple:
        info = infos[id(s)]
        return (
            not info.is_localizer,
            info.orientation is not None,
            info.orientation is not None and _axialish(s),
            info.n_slices,
            info.n_slices * info.n_volumes,
            -(s.number or 0),
        )

    chosen = max(series, key=rank)
    info = infos[id(chosen)]
    rest = [s.label for s in series if s is not chosen]
    others = "; ".join(rest[:4]) + (f"; and {len(rest) - 4} more" if len(rest) > 4 else "")
    note = (
        f"{len(series)} series found; loaded {chosen.label}: {info.orientation or 'no geometry'}, "
        f"{info.n_slices} slice(s) x {info.n_volumes} volume(s). Others: {others}. Pass series_uid to choose"
    )
    return chosen, [note]


def _axialish(s: Series) -> bool:
    frames, _ = usable_frames(s, strict=False)
    return bool(frames) and has_geometry(frames[0]) and dominant_axis(frames[0].iop) == "axial"  # type: ignore[arg-type]
