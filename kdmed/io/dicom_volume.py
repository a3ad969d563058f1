"""Frames of one series -> the voxel array and affine of one volume.

`plan_volume` works on headers only (so `inspect_source` costs no pixel decoding): it sorts frames by their
position along the slice normal, splits time points (explicit temporal index, else equal repeats of every
position ordered by acquisition time, trigger time, acquisition/echo number, then InstanceNumber), checks
spacing, and builds the affine. `build_study` then decodes just the frames of the chosen volume, applies
the modality rescale per frame first, inverts MONOCHROME1, and returns a canonical RAS `Study`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pydicom.pixels import apply_modality_lut

from kdmed.errors import StudyReadError
from kdmed.io.build import image_study, volume_study
from kdmed.io.dicom_geometry import (
    cluster_positions,
    lps_affine,
    lps_to_ras,
    shear_warning,
    slice_normal,
    spacing_warnings,
)
from kdmed.io.dicom_pixels import decode_pixels, read_dataset
from kdmed.io.dicom_records import DicomFile, Frame
from kdmed.io.dicom_series import Series, has_geometry, usable_frames
from kdmed.io.guard import reading
from kdmed.io.limits import ReadLimits, check_voxels
from kdmed.io.mosaic import split_tiles
from kdmed.io.orientation import axis_codes, canonical_affine, canonical_shape, voxel_sizes
from kdmed.io.study import Study, StudyMetadata

_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class VolumePlan:
    series: Series
    frames: list[Frame]  # the chosen volume's frames, in slice order (or the one 2D frame)
    n_volumes: int
    volume_index: int
    affine: np.ndarray | None  # voxel (column, row, slice) -> RAS mm; None for 2D images
    warnings: list[str]

    @property
    def is_volume(self) -> bool:
        return self.affine is not None

    @property
    def raw_shape(self) -> tuple[int, ...]:
        f = self.frames[0].file
        rows, cols = f.mosaic_tiles[1:] if f.mosaic_tiles else (f.rows, f.columns)
        if self.is_volume:
            return (cols, rows, len(self.frames))
        return (rows, cols, 3) if f.samples_per_pixel == 3 else (rows, cols)

    def final_shape(self) -> tuple[int, ...]:
        return canonical_shape(self.raw_shape, self.affine) if self.affine is not None else self.raw_shape

    def final_geometry(self) -> tuple[tuple[float, ...], tuple[str, ...] | None]:
        """(spacing, orientation codes) of the Study this plan will give, without decoding pixels."""
        if self.affine is None:
            spacing = self.frames[0].pixel_spacing or (1.0, 1.0)
            return (float(spacing[0]), float(spacing[1])), None
        affine = canonical_affine(self.affine, self.raw_shape)
        return voxel_sizes(affine), axis_codes(affine)


def plan_volume(series: Series, volume_index: int, source: str) -> VolumePlan:
    frames, notes = usable_frames(series, strict=True)
    if not frames:
        raise StudyReadError(f"{source}: {series.label} holds no usable image")
    if frames[0].file.samples_per_pixel == 3 or not has_geometry(frames[0]):
        return _plan_2d(series, frames, volume_index, source, notes)
    normal = slice_normal(frames[0].iop)  # type: ignore[arg-type]
    volumes = _split_volumes(frames, normal, series, source)
    _check_index(volume_index, len(volumes), f"{source}: {series.label}")
    chosen = sorted(volumes[volume_index], key=lambda fr: float(fr.ipp @ normal))  # type: ignore[operator]
    distances = np.array([float(fr.ipp @ normal) for fr in chosen])  # type: ignore[operator]
    warnings = list(notes) + spacing_warnings(distances)
    if len(chosen) > 1:
        step = (chosen[-1].ipp - chosen[0].ipp) / (len(chosen) - 1)  # type: ignore[operator]
        shear = shear_warning(step, normal)
        if shear:
            warnings.append(shear)
    else:
        gap = chosen[0].slice_gap
        if gap is None:
            warnings.append("single slice without SliceThickness: its thickness was set to 1 mm")
        step = normal * (gap or 1.0)
    spacing = chosen[0].pixel_spacing
    if spacing is None:
        warnings.append("PixelSpacing is missing: in-plane voxel size was set to 1 mm")
        spacing = (1.0, 1.0)
    affine = lps_to_ras(lps_affine(chosen[0].iop, chosen[0].ipp, spacing, step))  # type: ignore[arg-type]
    return VolumePlan(series, chosen, len(volumes), volume_index, affine, warnings)


def _plan_2d(series: Series, frames: list[Frame], index: int, source: str, notes: list[str]) -> VolumePlan:
    frames = sorted(frames, key=lambda fr: (fr.file.instance, fr.index))
    _check_index(index, len(frames), f"{source}: {series.label}")
    notes = list(notes)
    if frames[0].file.samples_per_pixel == 1 and not has_geometry(frames[0]):
        notes.append("no patient position/orientation in the header: loaded as a 2D image")
    if len(frames) > 1:
        notes.append(
            f"{len(frames)} frames without slice geometry: each is one volume (volume_index selects)"
        )
    return VolumePlan(series, [frames[index]], len(frames), index, None, notes)


def _check_index(index: int, n: int, what: str) -> None:
    if not 0 <= index < n:
        raise StudyReadError(
            f"{what}: volume_index {index} is out of range; it has {n} volume(s) (0..{n - 1})"
        )


def _split_volumes(frames: list[Frame], normal: np.ndarray, series: Series, source: str) -> list[list[Frame]]:
    """Time points of a series: each a list of frames at distinct positions."""
    distances = np.array([float(fr.ipp @ normal) for fr in frames])  # type: ignore[operator]
    temporal = [fr.temporal_index for fr in frames]
    if all(t is not None for t in temporal) and len(set(temporal)) > 1:
        groups: dict[int, list[Frame]] = defaultdict(list)
        for fr in frames:
            groups[fr.temporal_index].append(fr)  # type: ignore[index]
        volumes = [groups[t] for t in sorted(groups)]
        if len({len(v) for v in volumes}) == 1 and all(_distinct(v, normal) for v in volumes):
            return volumes
    clusters = cluster_positions(distances)
    counts = sorted({len(c) for c in clusters})
    if counts == [1]:
        return [frames]
    if len(counts) == 1:
        ordered = [sorted((frames[i] for i in c), key=lambda fr: fr.time_key) for c in clusters]
        return [[position[t] for position in ordered] for t in range(counts[0])]
    base = counts[0]
    extra = [c for c in clusters if len(c) > base]
    example = frames[extra[0][0]]
    where = f"{float(example.ipp @ normal):.2f} mm along the slice normal"  # type: ignore[operator]
    if len(counts) == 2 and counts[1] == base + 1 and base > 1:
        problem = (
            f"an incomplete time series: {len(extra)} of {len(clusters)} slice positions hold {base + 1} "
            f"images and the others {base} (the last time point seems cut short). Remove its files"
        )
    else:
        problem = (
            f"duplicate slice positions that are not time points: {len(extra)} of {len(clusters)} positions "
            f"hold more images ({', '.join(map(str, counts[1:]))}) than the others ({base}). Remove "
            "duplicated files or load one acquisition at a time"
        )
    raise StudyReadError(f"{source}: {series.label} has {problem} (e.g. {example.file.item.name} at {where})")


def _distinct(frames: list[Frame], normal: np.ndarray) -> bool:
    clusters = cluster_positions(np.array([float(fr.ipp @ normal) for fr in frames]))  # type: ignore[operator]
    return len(clusters) == len(frames)


def build_study(plan: VolumePlan, limits: ReadLimits, extra_warnings: list[str]) -> Study:
    first = plan.frames[0].file
    check_voxels(first.item.name, plan.raw_shape, limits)
    slices = _decode(plan.frames, limits)
    warnings = tuple(extra_warnings + plan.warnings)
    window = plan.frames[0].window
    if first.photometric == "MONOCHROME1":
        if window is not None:
            lo, hi = _rescaled_range(plan.frames[0])
            window = (lo + hi - window[0], window[1])
        warnings += ("MONOCHROME1 (white = low) values were inverted within the stored range so that higher "
                     "values are brighter",)  # fmt: skip
    meta = StudyMetadata(
        source_kind="dicom",
        modality=first.modality,
        series_description=plan.series.description,
        series_uid=plan.series.uid or None,
        series_number=plan.series.number,
        n_volumes=plan.n_volumes,
        volume_index=plan.volume_index,
        window_center=window[0] if window else None,
        window_width=window[1] if window else None,
        photometric=first.photometric,
        warnings=warnings,
        phi=dict(first.phi),
    )
    if not plan.is_volume:
        spacing = plan.frames[0].pixel_spacing or (1.0, 1.0)
        return image_study(first.item.name, slices[0], spacing, meta)
    volume = np.stack(slices, axis=0).transpose(2, 1, 0)  # (slice, row, col) -> (col, row, slice)
    numbers = tuple(int(frame.file.instance) for frame in plan.frames)
    return volume_study(
        first.item.name, volume, plan.affine, meta,  # type: ignore[arg-type]
        input_shape=plan.raw_shape, instance_numbers=numbers,
    )  # fmt: skip


def _decode(frames: list[Frame], limits: ReadLimits) -> list[np.ndarray]:
    """Rescaled (and MONOCHROME1-inverted) float32 slices, decoding each file once."""
    by_file: dict[int, tuple[DicomFile, list[int]]] = {}
    for pos, fr in enumerate(frames):
        by_file.setdefault(id(fr.file), (fr.file, []))[1].append(pos)
    out: list[np.ndarray | None] = [None] * len(frames)
    for f, positions in by_file.values():
        ds = read_dataset(f.item, pixels=True)
        pixels = decode_pixels(f.item, ds, limits)
        if f.modality_lut:
            with reading(f.item.name, "the Modality LUT cannot be applied", "export the file again"):
                pixels = np.asarray(apply_modality_lut(pixels, ds))
        if f.mosaic_tiles is not None:
            pixels = split_tiles(pixels[0], f.mosaic_tiles)
        for pos in positions:
            fr = frames[pos]
            if fr.index >= len(pixels):
                raise StudyReadError(
                    f"{f.item.name}: frame {fr.index + 1} is missing from the pixel data ({len(pixels)} "
                    "frames decoded); the file is truncated or its NumberOfFrames is wrong"
                )
            out[pos] = _rescale(fr, pixels[fr.index])
    return out  # type: ignore[return-value]


def _rescale(frame: Frame, pixels: np.ndarray) -> np.ndarray:
    lo, hi = _rescaled_range(frame)
    # float32 arithmetic is exact enough and twice as fast; float64 only when the result could overflow
    dtype = np.float32 if max(abs(lo), abs(hi)) * 2 < _FLOAT32_MAX else np.float64
    values = pixels.astype(dtype)
    if not frame.file.modality_lut and (frame.slope != 1.0 or frame.intercept != 0.0):
        values = values * dtype(frame.slope) + dtype(frame.intercept)
    if frame.file.photometric == "MONOCHROME1":
        values = dtype(lo + hi) - values
    if dtype is np.float64:
        with np.errstate(over="ignore"):
            return values.astype(np.float32)  # out-of-range values become inf and are refused downstream
    return values


def _rescaled_range(frame: Frame) -> tuple[float, float]:
    lo, hi = frame.file.stored_range
    if frame.file.modality_lut:
        return lo, hi
    a, b = lo * frame.slope + frame.intercept, hi * frame.slope + frame.intercept
    return min(a, b), max(a, b)
