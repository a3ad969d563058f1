"""`kdmed score`: score a study (NIfTI, DICOM series, 2D image) or a folder of 2D images with a checkpoint.

`score_source` returns one JSON-able report (NaN as None); with `out` it also writes the anomaly maps as
NPZ on the input's own voxel grid and overlay PNGs, all atomically. Reading goes through `kdmed.io` (once:
the `Study` carries its input grid and the series found) and scoring only through
`kdmed.inference.score_study` (the app's code path, the evaluate stage's rules); this module only undoes
the preprocessing geometry: square foreground crop, radiological view, slice axis and RAS reorientation
for volumes, the resize for 2D images. Slices outside the model's slice policy are listed with their
status and no score. Overlays are scaled by the one rule (`kdmed.rules.heat_scale`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from kdmed import atomic
from kdmed.checkpoint import Checkpoint, load_checkpoint
from kdmed.contract import LITTLE_TISSUE, OUTSIDE_RANGE, SCORED, CheckpointHeader
from kdmed.data.transforms import from_view, resize_map, to_unit_range
from kdmed.errors import KdmedError, StudyReadError
from kdmed.findings import group_findings
from kdmed.inference import StudyResult, score_study
from kdmed.io import InputGrid, Item, Study, list_images, load_study
from kdmed.runtimes import with_runtime

log = logging.getLogger(__name__)

OVERLAYS_WHEN_NONE_FLAGGED = 5


def score_source(
    source: Any,
    model: str | Path,
    *,
    out: str | Path | None = None,
    series_uid: str | None = None,
    batch_size: int = 16,
    checkpoint: Checkpoint | None = None,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Score `source` (a path, a folder, or a list of paths) with the checkpoint at `model` (`checkpoint`:
    that file already loaded, as `kdmed score-archive`'s workers keep it between studies). `runtime`: torch,
    or onnx for ONNX Runtime (`kdmed.runtimes`)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise KdmedError(f"--batch-size must be a positive integer, got {batch_size!r}; pass e.g. 16")
    out = Path(out) if out is not None else None
    images = image_items(source, series_uid)
    if checkpoint is None:
        checkpoint = with_runtime(load_checkpoint(model), runtime, model)
    study = load_study(source, series_uid=series_uid) if images is None else None
    if out is not None:
        _make_folder(out)
    report: dict[str, Any] = {"source": _label(source), "model": model_info(model, checkpoint.header)}
    report["threshold"] = checkpoint.threshold
    report["operating_point"] = checkpoint.serving.calibration.operating_point()
    if study is None:
        return report | _score_images(checkpoint, images, source, out, batch_size)
    result = score_study(checkpoint, study, batch_size=batch_size)
    if study.is_volume:
        return report | _score_volume(checkpoint, study, result, out)
    return report | _score_image(study, result, Path(_label(source)).name, out)


def model_info(path: str | Path, header: CheckpointHeader) -> dict[str, Any]:
    serving = header.serving
    info = {
        "path": str(path),
        "method": header.card.method,
        "backbone": header.card.backbone,
        "dataset": header.card.dataset,
        "kind": serving.kind,
        "image_size": serving.preprocessing.image_size,
        "trained_at": header.card.trained_at,
        "threshold_rule": serving.calibration.rule,
        "study_aggregation": serving.aggregation.how,
    }
    if serving.slice_policy is not None:
        info["slice_policy"] = serving.slice_policy.describe()
    return info


# ------------------------------------------------------------------------------------------- volumes


def volume_maps(result: StudyResult, study: Study, grid: InputGrid) -> np.ndarray:
    """Per-slice maps (cropped view resolution) -> one float32 array on the input's grid; unscored slices 0."""
    geometry = result.geometry
    canonical = np.zeros(study.array.shape, np.float32)
    for i, k in enumerate(result.slice_indices):
        if not np.isfinite(result.scores[i]):
            continue
        index: list[Any] = [slice(None)] * 3
        index[geometry.axis] = k
        canonical[tuple(index)] = from_view(uncrop(result.maps[i], geometry.crop_box, geometry.view_shape))
    return grid.array(canonical)


def uncrop(view_map: np.ndarray, box: tuple[int, int, int, int], view_shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `crop_padded` for one map: back onto the uncropped view, padding dropped, outside 0."""
    r0, r1, c0, c1 = box
    if view_map.shape != (r1 - r0, c1 - c0):
        raise ValueError(f"map of shape {view_map.shape} does not fit crop box {box}")
    h, w = view_shape
    out = np.zeros(view_shape, np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    out[sr0:sr1, sc0:sc1] = view_map[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0]
    return out


def _score_volume(checkpoint, study, result, out) -> dict[str, Any]:
    grid = study.grid
    axis = result.geometry.axis
    n = study.array.shape[axis]
    input_axis = grid.index(axis, 0, n)[0]
    slices = []
    for i, k in enumerate(result.slice_indices):
        entry = {"name": result.names[i], "slice": k, "input_index": grid.index(axis, k, n)[1]}
        if grid.instance_numbers is not None and input_axis == 2:
            entry["instance_number"] = grid.instance_numbers[entry["input_index"]]
        slices.append(entry | _scores(result, i))
    meta = study.metadata
    report = {
        "kind": "volume",
        "input": {
            "source_kind": meta.source_kind,
            "shape": list(grid.shape),
            "orientation": grid.orientation,
            "slice_axis": input_axis,
            "n_volumes": meta.n_volumes,
            "volume_index": meta.volume_index,
            "warnings": list(meta.warnings),
        },
        "study_score": _num(result.study_score),
        "study_normalized": _num(_normalized(checkpoint, result.study_score)),
        "study_flagged": result.study_flagged,
        "n_slices": len(slices),
        "n_scored": result.count(SCORED),
        "n_outside_trained_range": result.count(OUTSIDE_RANGE),
        "n_too_little_tissue": result.count(LITTLE_TISSUE),
        "n_flagged": int(result.flagged.sum()),
        "findings": _findings(slices, result),
        "out_of_distribution": _guard(result),
        "slices": slices,
    }
    if meta.source_kind == "dicom":
        report["input"]["series"] = {
            "uid": meta.series_uid,
            "number": meta.series_number,
            "description": meta.series_description,
            "modality": meta.modality,
        }
        report["input"]["available_series"] = [info.to_dict() for info in study.series]
    if out is not None:
        maps = volume_maps(result, study, grid)
        scores = np.full(grid.shape[input_axis], np.nan)
        for entry, score in zip(slices, result.scores, strict=True):
            scores[entry["input_index"]] = score
        write_npz(out / "maps.npz", maps=maps, affine=grid.affine, slice_axis=np.int64(input_axis),
                  slice_scores=scores, threshold=np.float64(result.threshold))  # fmt: skip
        vmax = result.heat_scale
        overlays = []
        for i in _overlay_order(result.scores, result.flagged):
            path = out / "overlays" / f"slice_{result.slice_indices[i]:03d}.png"
            write_overlay(path, result.views[i], result.maps[i], _title(result, i), vmax)
            overlays.append(str(path))
        report["outputs"] = {"maps": str(out / "maps.npz"), "overlays": overlays}
    return report


def _guard(result: StudyResult) -> dict[str, Any]:
    """The out-of-distribution guard's answer (`kdmed.ood`): never a silent verdict."""
    check = result.out_of_distribution
    return check.to_dict() if check is not None else {"available": False, "warn": False}


def _findings(slices: list[dict[str, Any]], result: StudyResult) -> list[dict[str, Any]]:
    """Flagged slices as runs on the input's slice index, ranked by peak (`kdmed.findings`)."""
    order = sorted(range(len(slices)), key=lambda i: slices[i]["input_index"])
    found = group_findings(
        [slices[i]["input_index"] for i in order],
        [float(result.scores[i]) for i in order],
        [bool(result.flagged[i]) for i in order],
    )
    return [f.to_dict() for f in found]


# --------------------------------------------------------------------------------------------- images


def image_items(source: Any, series_uid: str | None) -> list[Item] | None:
    """The 2D images of a folder or list of paths holding nothing else scoreable; None for any other
    source (it is one study, read by `load_study`)."""
    return None if series_uid is not None else list_images(source)


def _score_image(study: Study, result: StudyResult, name: str, out: Path | None) -> dict[str, Any]:
    """One 2D image given on its own: its entry, its map at its own size and its overlay."""
    entry = _image_entry(study, result, name, out, maps_name="maps.npz", overlay_name="overlays/image.png")
    return {
        "kind": "image",
        "study_score": _num(result.study_score),
        "study_normalized": entry["normalized"],
        "study_flagged": result.study_flagged,
        "n_flagged": int(result.flagged.sum()),
        "out_of_distribution": entry["out_of_distribution"],
        "images": [entry],
    }


def _image_entry(study, result, name, out, maps_name: str, overlay_name: str | None) -> dict[str, Any]:
    """Scores of one image; with `out`, its map as NPZ at the image's own height x width, and an overlay
    when `overlay_name` is given."""
    entry: dict[str, Any] = {"name": name, "shape": list(study.array.shape[:2])} | _scores(result, 0)
    entry["out_of_distribution"] = _guard(result)
    if study.metadata.warnings:
        entry["warnings"] = list(study.metadata.warnings)
    if out is None:
        return entry
    heat = image_map(result, study)
    write_npz(out / maps_name, maps=heat, score=np.float64(result.scores[0]), threshold=result.threshold)
    entry["outputs"] = {"maps": str(out / maps_name)}
    if overlay_name is not None:
        write_overlay(out / overlay_name, _display(study), heat, _title(result, 0, name), result.heat_scale)
        entry["outputs"]["overlay"] = str(out / overlay_name)
    return entry


def image_map(result: StudyResult, study: Study) -> np.ndarray:
    """The map of a 2D image back at the image's own height x width (undoing the resize to the model)."""
    return resize_map(result.maps[0], tuple(study.array.shape[:2]))


def _score_images(checkpoint, images: list[Item], source, out: Path | None, batch_size: int) -> dict:
    """A folder (or list) of 2D images, one `score_study` call each; unreadable images are reported."""
    if checkpoint.serving.kind == "volume":
        raise StudyReadError(
            f"model '{checkpoint.header.card.name}' scores 3D volumes, but {_label(source)} holds 2D "
            "images; pass a NIfTI file or a DICOM series, or an image model"
        )
    root = Path(source) if isinstance(source, str | Path) else None
    entries, errors, runners_up, used = [], [], [], set()
    for item in images:
        name = _relative(item.name, root)
        stem = _file_stem(name if root is not None else Path(name).name, used)
        try:
            study = load_study(item.path if item.path is not None else [(item.name, item.read())])
            result = score_study(checkpoint, study, batch_size=batch_size)
        except StudyReadError as error:
            log.warning("%s: %s", name, error)
            errors.append({"name": name, "error": str(error)})
            continue
        overlay = f"overlays/{stem}.png" if result.flagged[0] else None
        entries.append(_image_entry(study, result, name, out, f"maps/{stem}.npz", overlay))
        if out is not None and not result.flagged[0] and np.isfinite(result.scores[0]):
            runners_up.append((float(result.scores[0]), len(entries) - 1, stem, study, result))
            runners_up = sorted(runners_up, key=lambda r: -r[0])[:OVERLAYS_WHEN_NONE_FLAGGED]
    if not entries:
        raise StudyReadError(
            f"{_label(source)}: none of its {len(images)} image(s) could be read; first: {errors[0]['error']}"
        )
    flagged = sum(e["flagged"] for e in entries)
    if out is not None and flagged == 0:
        for _, i, stem, study, result in runners_up:
            path = out / "overlays" / f"{stem}.png"
            heat = image_map(result, study)
            write_overlay(
                path, _display(study), heat, _title(result, 0, entries[i]["name"]), result.heat_scale
            )
            entries[i]["outputs"]["overlay"] = str(path)
    return {
        "kind": "images",
        "n_images": len(images),
        "n_scored": sum(e["score"] is not None for e in entries),
        "n_flagged": flagged,
        "out_of_distribution": {
            "n_checked": sum(e["out_of_distribution"]["available"] for e in entries),
            "n_warned": sum(e["out_of_distribution"]["warn"] for e in entries),
        },
        "images": entries,
        "errors": errors,
    }


def _relative(name: str, root: Path | None) -> str:
    """An image's name in the report: its path inside the folder given, or the path as given."""
    if root is not None:
        with contextlib.suppress(ValueError):
            return Path(name).relative_to(root).as_posix()
    return name


def _file_stem(name: str, used: set[str]) -> str:
    """A unique relative output path for an image (its name without root, '..' or '.' parts): the path
    inside the folder given, or for a list of files the file name (`a.png`, then `a.png~2`)."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", "..", ".")]
    stem = "/".join(parts) or "image"
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}~{n}"
    used.add(candidate)
    return candidate


def _display(study: Study) -> np.ndarray:
    """The image in [0, 1] as (C, H, W) for an overlay, in its stored row/column order."""
    image = to_unit_range(np.asarray(study.array))
    return image[None] if image.ndim == 2 else np.moveaxis(image[..., :3], -1, 0)


# --------------------------------------------------------------------------------------------- output


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # an existing file of that name, no permission, a read-only disk
        raise KdmedError(
            f"--out {out}: cannot create this folder ({error}); pass a writable folder"
        ) from error


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic.write_bytes(path, buffer.getvalue())


def write_overlay(path: Path, view: np.ndarray, heat: np.ndarray, title: str, vmax: float) -> None:
    """The image in grey (or colour) with the anomaly map on top, a colour bar and the verdict."""
    from kdmed.plots import display_image, plt

    figure, axis = plt.subplots(figsize=(4.2, 3.6))
    image = display_image(view)
    axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
    layer = axis.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=vmax)
    figure.colorbar(layer, ax=axis, fraction=0.046, pad=0.04)
    axis.set_axis_off()
    axis.set_title(title, fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    atomic.write_bytes(path, buffer.getvalue())


def _overlay_order(scores: np.ndarray, flagged: np.ndarray) -> list[int]:
    """Flagged slices, or the highest-scoring scored ones when none is flagged."""
    index = np.flatnonzero(flagged)
    if index.size == 0:
        index = np.flatnonzero(np.isfinite(scores))
        index = index[np.argsort(-scores[index], kind="stable")][:OVERLAYS_WHEN_NONE_FLAGGED]
    return sorted(index.tolist())


def _title(result: StudyResult, i: int, name: str | None = None) -> str:
    if result.status[i] != SCORED:
        return f"{name or result.names[i]}: not scored ({result.status[i]})"
    verdict = "FLAGGED" if result.flagged[i] else "not flagged"
    return f"{name or result.names[i]}: score {result.scores[i]:.4g} (threshold {result.threshold:.4g}), {verdict}"


def _scores(result: StudyResult, i: int) -> dict[str, Any]:
    return {
        "score": _num(result.scores[i]),
        "normalized": _num(result.normalized[i]),
        "flagged": bool(result.flagged[i]),
        "status": result.status[i],
    }


def _normalized(checkpoint: Checkpoint, score: float) -> float:
    from kdmed.calibration import normalized_score

    return (
        float("nan")
        if not math.isfinite(score)
        else float(normalized_score(score, checkpoint.serving.calibration))
    )


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON null) for NaN / infinity."""
    value = float(value)
    return value if math.isfinite(value) else None


def _label(source: Any) -> str:
    if isinstance(source, list | tuple):
        return f"the {len(source)} file(s) given"
    return str(source)
