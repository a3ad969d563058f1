"""The entry points: `load_study`, `list_series`, `inspect_source`, `list_images`.

A source is sniffed file by file (see `sources`), then routed by content: DICOM files form series, one NIfTI
or one 2D image forms a study on its own. Files that are not images (a README next to a series, a DICOMDIR,
an empty file) are skipped with a warning when other files make a study; alone, they are an error.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from kdmed.errors import StudyReadError
from kdmed.io.dicom_series import Series, choose, scan, series_info
from kdmed.io.dicom_volume import build_study, plan_volume
from kdmed.io.guard import boundary
from kdmed.io.images2d import image_info, load_image
from kdmed.io.limits import ReadLimits
from kdmed.io.nifti import load_nifti, nifti_info
from kdmed.io.sniff import DICOM_KINDS, IMAGE_KINDS, NIFTI_KINDS, SUPPORTED, Kind, raw_dicom_offset
from kdmed.io.sources import Item, collect
from kdmed.io.study import SeriesInfo, Study


def load_study(
    source: Any,
    *,
    series_uid: str | None = None,
    volume_index: int = 0,
    limits: ReadLimits | None = None,
) -> Study:
    """Read a study into a float32 array with its geometry (see `kdmed.io.study` for the conventions).

    source: path to a file or folder, list of paths, bytes, list of (name, bytes), or upload objects.
    series_uid: the DICOM series to load when a source holds several (default: the largest axial-ish
        non-localiser series, reported in `metadata.warnings`).
    volume_index: which time point of a 4D series / file (see `metadata.n_volumes`).
    Raises `StudyReadError` (or its subclass `UnsupportedStudyError`) naming the file and the problem.
    """
    limits = limits or ReadLimits()
    _check_volume_index(volume_index)
    label = _label(source)
    with boundary(label):
        return _load_study(source, label, series_uid, volume_index, limits)


def _load_study(
    source: Any, label: str, series_uid: str | None, volume_index: int, limits: ReadLimits
) -> Study:
    kind, items, notes = _route(collect(source, limits), label, series_uid)
    if kind == "nifti":
        study = load_nifti(items[0], volume_index, limits)
    elif kind == "image":
        study = load_image(items[0], volume_index, limits)
    else:
        series, scan_notes = scan(items, label, limits)
        chosen, choice_notes = choose(series, series_uid, label)
        plan = plan_volume(chosen, volume_index, label)
        study = build_study(plan, limits, notes + scan_notes + choice_notes)
        return replace(study, series=tuple(_sorted_infos(series)))
    if notes:
        study = replace(
            study, metadata=replace(study.metadata, warnings=tuple(notes) + study.metadata.warnings)
        )
    return study


def list_series(source: Any, *, limits: ReadLimits | None = None) -> list[SeriesInfo]:
    """Every series in the source, or one entry for a NIfTI file or a 2D image; headers only, no voxels."""
    limits = limits or ReadLimits()
    label = _label(source)
    with boundary(label):
        return _list_series(source, label, limits)


def _list_series(source: Any, label: str, limits: ReadLimits) -> list[SeriesInfo]:
    kind, items, _ = _route(collect(source, limits), label, None)
    if kind == "dicom":
        series, _ = scan(items, label, limits)
        return _sorted_infos(series)
    return [nifti_info(items[0], limits) if kind == "nifti" else image_info(items[0], limits)]


def list_images(source: Any, *, limits: ReadLimits | None = None) -> list[Item] | None:
    """The 2D images of a folder or list of paths that holds nothing else a study is read from (no DICOM,
    no NIfTI), each an `Item` (`.name`, `.path`, `.read()`); None for any other source, which is one study
    for `load_study`. Headers are sniffed only."""
    is_folder = isinstance(source, str | Path) and Path(source).is_dir()
    if not (is_folder or isinstance(source, list | tuple)):
        return None
    limits = limits or ReadLimits()
    with boundary(_label(source)):
        items = collect(source, limits)
    if any(i.kind in DICOM_KINDS | NIFTI_KINDS for i in items):
        return None
    return [i for i in items if i.kind in IMAGE_KINDS] or None


def _sorted_infos(series: list[Series]) -> list[SeriesInfo]:
    """DICOM series by SeriesNumber (missing last), then UID."""
    infos = [series_info(s) for s in series]
    return sorted(infos, key=lambda i: (i.number is None, i.number or 0, i.uid or ""))


def inspect_source(
    source: Any, series_uid: str | None = None, *, limits: ReadLimits | None = None
) -> dict[str, Any]:
    """JSON-serialisable summary without identifying fields: the series, and the chosen one's geometry.

    DICOM is inspected from headers alone (no pixel decoding); NIfTI and images are read.
    """
    limits = limits or ReadLimits()
    label = _label(source)
    with boundary(label):
        return _inspect_source(source, label, series_uid, limits)


def _inspect_source(source: Any, label: str, series_uid: str | None, limits: ReadLimits) -> dict[str, Any]:
    kind, items, notes = _route(collect(source, limits), label, series_uid)
    if kind == "dicom":
        series, scan_notes = scan(items, label, limits)
        chosen, choice_notes = choose(series, series_uid, label)
        plan = plan_volume(chosen, 0, label)
        spacing, orientation = plan.final_geometry()
        first = plan.frames[0].file
        infos = _sorted_infos(series)
        return {
            "source_kind": "dicom",
            "n_files": len(items),
            "series": [i.to_dict() for i in infos],
            "chosen_series_uid": chosen.uid or None,
            "shape": list(plan.final_shape()),
            "spacing": [round(float(s), 6) for s in spacing],
            "orientation": list(orientation) if orientation else None,
            "is_volume": plan.is_volume,
            "n_volumes": plan.n_volumes,
            "modality": first.modality,
            "photometric": first.photometric,
            "warnings": notes + scan_notes + choice_notes + plan.warnings,
        }
    study = load_nifti(items[0], 0, limits) if kind == "nifti" else load_image(items[0], 0, limits)
    return {
        "source_kind": study.metadata.source_kind,
        "n_files": len(items),
        "series": [i.to_dict() for i in study.series],
        "chosen_series_uid": None,
        "shape": list(study.array.shape),
        "spacing": [round(float(s), 6) for s in study.spacing],
        "orientation": list(study.metadata.orientation) if study.metadata.orientation else None,
        "is_volume": study.is_volume,
        "n_volumes": study.metadata.n_volumes,
        "modality": None,
        "photometric": study.metadata.photometric,
        "warnings": notes + list(study.metadata.warnings),
    }


def _check_volume_index(volume_index: Any) -> None:
    if not isinstance(volume_index, int) or isinstance(volume_index, bool) or volume_index < 0:
        raise StudyReadError(f"volume_index must be a non-negative integer, got {volume_index!r}")


def _label(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, list | tuple):
        return f"the {len(source)} file(s) given"
    return "the upload"


def _route(items: list[Item], label: str, series_uid: str | None) -> tuple[str, list[Item], list[str]]:
    """('dicom' | 'nifti' | 'image', the items to read, notes on skipped files)."""
    if len(items) == 1:
        _refuse_single(items[0])
    dicom = [i for i in items if i.kind in DICOM_KINDS]
    nifti = [i for i in items if i.kind in NIFTI_KINDS]
    images = [i for i in items if i.kind in IMAGE_KINDS]
    skipped = [i for i in items if i.kind not in DICOM_KINDS | NIFTI_KINDS | IMAGE_KINDS]
    notes = []
    if skipped:
        names = ", ".join(f"{Path(i.name).name} ({i.problem or _short_reason(i)})" for i in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        notes.append(f"{len(skipped)} file(s) that are not images were skipped: {names}{more}")
    if dicom:
        if nifti or images:
            notes.append(
                f"{len(nifti) + len(images)} non-DICOM image file(s) next to the DICOM files were ignored"
            )
        return "dicom", dicom, notes
    if series_uid is not None and (nifti or images):
        raise StudyReadError(
            f"{label}: series_uid={series_uid!r} was given but the source holds no DICOM files"
        )
    candidates = nifti + images
    if not candidates:
        reasons = "; ".join(f"{i.name}: {_why_not(i)}" for i in skipped[:3])
        raise StudyReadError(f"{label}: no readable image was found ({reasons}). Supported: {SUPPORTED}")
    if len(candidates) > 1:
        names = ", ".join(i.name for i in candidates[:5])
        raise StudyReadError(
            f"{label}: holds {len(candidates)} separate image files ({names}); a study is one NIfTI file, "
            "one 2D image, or one DICOM series. Pass a single file"
        )
    return ("nifti" if nifti else "image"), candidates, notes


def _refuse_single(item: Item) -> None:
    if item.kind is Kind.EMPTY:
        raise StudyReadError(f"{item.name}: the file is empty (0 bytes); upload or export it again")
    if item.kind is Kind.UNKNOWN:
        raise StudyReadError(f"{item.name}: {_why_not(item)}")


def _short_reason(item: Item) -> str:
    return "empty file" if item.kind is Kind.EMPTY else "not an image format"


def _why_not(item: Item) -> str:
    if item.problem:
        return item.problem
    if item.kind is Kind.EMPTY:
        return "empty file"
    head = item.head() if item.data is None or item.data else b""
    offset = raw_dicom_offset(head)
    if offset:
        return (
            f"looks like a DICOM data set without File Meta header, but shifted by {offset} stray leading "
            "byte(s), so it cannot be parsed reliably; the file is damaged: export it again from the source"
        )
    return f"not a supported image format (supported: {SUPPORTED})"
