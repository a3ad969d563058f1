"""Scoring: the only code path the evaluate stage, `kdmed score` and the app use to run a detector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kdmed.data.transforms import to_model_input
from kdmed.models.base import Detector
from kdmed.runtime import autocast


@dataclass(frozen=True)
class Scores:
    maps: np.ndarray  # (N, S, S) float32
    scores: np.ndarray  # (N,) float64


@torch.no_grad()
def predict_images(
    detector: Detector,
    images: torch.Tensor,
    batch_size: int = 32,
    amp: torch.dtype | None = None,
    progress=None,
) -> Scores:
    """Maps and scores for uint8 or [0, 1] float images (N, C, S, S), in batches, in eval mode."""
    was_training = detector.training
    detector.eval()
    device = next(detector.parameters()).device
    maps, scores = [], []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = to_model_input(images[start : start + batch_size]).to(device, non_blocking=True)
            with autocast(device, amp):
                prediction = detector.predict(batch)
            maps.append(prediction.maps.float().cpu().numpy())
            scores.append(prediction.scores.double().cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, images.shape[0]), images.shape[0])
    finally:
        detector.train(was_training)
    return Scores(maps=np.concatenate(maps).astype(np.float32), scores=np.concatenate(scores))


@torch.no_grad()
def selection_value(
    detector: Detector, images: torch.Tensor, batch_size: int = 32, amp: torch.dtype | None = None
) -> float:
    """Mean of the method's checkpoint-selection values over held-out normal images (lower is better)."""
    was_training = detector.training
    detector.eval()
    device = next(detector.parameters()).device
    total, count = 0.0, 0
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = to_model_input(images[start : start + batch_size]).to(device)
            with autocast(device, amp):
                values = detector.selection_scores(batch).float()
            total += float(values.sum())
            count += values.numel()
    finally:
        detector.train(was_training)
    return total / max(count, 1)


# ------------------------------------------------------------------------------------- whole studies


@dataclass(frozen=True)
class ViewGeometry:
    """Where a volume's views sit: the slice axis, the square crop box every view was cut with (rows then
    columns, in the radiological view) and the uncropped view's shape. What maps need to go back onto the
    volume's grid (`kdmed score`) and what the app needs to cut the study's own pixels the same way."""

    axis: int
    crop_box: tuple[int, int, int, int]
    view_shape: tuple[int, int]


@dataclass(frozen=True)
class StudyResult:
    """Per-slice (or per-image) scores of one study, with display views and maps at view resolution."""

    names: list[str]
    scores: np.ndarray  # (N,) raw scores; NaN for slices without enough tissue to score
    normalized: np.ndarray  # (N,) 0.5 = threshold
    flagged: np.ndarray  # (N,) bool, at the calibrated threshold
    views: list[np.ndarray]  # (C, h, w) [0, 1] display images (cropped slice views or the image)
    maps: list[np.ndarray]  # (h, w) anomaly maps at the view's resolution
    threshold: float
    study_score: float
    study_flagged: bool
    slice_indices: list[int]
    geometry: ViewGeometry | None = None  # volumes only

    def flags_at(self, threshold: float) -> np.ndarray:
        """(N,) bool: slices above `threshold`; NaN scores (too little tissue) are never flagged."""
        return _above(self.scores, threshold)

    def study_flagged_at(self, threshold: float) -> bool:
        return bool(np.isfinite(self.study_score) and self.study_score > threshold)

    def flagged_order(self, threshold: float | None = None) -> list[int]:
        """Indices of the slices above `threshold` (default: the calibrated one), most suspicious first."""
        index = np.flatnonzero(self.flags_at(self.threshold if threshold is None else threshold))
        return index[np.argsort(-self.scores[index], kind="stable")].tolist()


def _above(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.nan_to_num(scores, nan=-np.inf) > threshold


def study_items(checkpoint, study) -> tuple[list[dict], ViewGeometry | None]:
    """Run the checkpoint's own preprocessing (the training transforms) on a loaded study: the items and,
    for a volume, where its views sit."""
    from kdmed.data.preprocess import slice_rules
    from kdmed.data.transforms import build_image_transform, build_volume_transform
    from kdmed.errors import StudyReadError

    meta = checkpoint.metadata
    size = int(meta["image_size"])
    if meta["kind"] == "volume":
        if not study.is_volume:
            raise StudyReadError(
                f"model '{meta['dataset']}/{meta['method']}' scores 3D volumes, but this study "
                f"is a 2D image of shape {study.array.shape}; upload a NIfTI or DICOM series."
            )
        from kdmed.config import DatasetConfig, PreprocessConfig
        from kdmed.config_schema import build

        preprocess = build(PreprocessConfig, meta["preprocess"], "preprocess")
        rules = slice_rules(build(DatasetConfig, meta["dataset_config"], "dataset"))
        items = build_volume_transform(preprocess, rules, size, keep_all=True)({"image": study})
        first = items[0]
        return items, ViewGeometry(rules.axis, tuple(first["crop_box"]), tuple(first["view_shape"]))
    if study.is_volume:
        raise StudyReadError(
            f"model '{meta['dataset']}/{meta['method']}' scores 2D images, but this study is a "
            f"volume of shape {study.array.shape}; upload a 2D image (png, jpg, bmp, tif)."
        )
    item = build_image_transform(size)({"image": study})
    item.update(slice=0, scoreable=True, view=item["image"])
    return [item], None


def score_study(
    checkpoint, study, batch_size: int = 16, aggregation: str = "max", top_k: int = 3, progress=None
) -> StudyResult:
    """Score every slice of a study (or the image) with a loaded checkpoint; the app and `kdmed score` call
    this. Slices with too little tissue are not scored (NaN) and never flagged."""
    from kdmed.calibration import normalized_score
    from kdmed.data.transforms import resize_map

    items, geometry = study_items(checkpoint, study)
    channels = int(checkpoint.metadata["channels"])
    scoreable = [i for i, item in enumerate(items) if item["scoreable"]]
    images = (
        np.stack([_match_channels(items[i]["image"], channels) for i in scoreable]) if scoreable else None
    )
    scores = np.full(len(items), np.nan)
    maps: list[np.ndarray] = [np.zeros(item["view"].shape[-2:], np.float32) for item in items]
    if images is not None:
        tensor = torch.from_numpy(np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8))
        result = predict_images(checkpoint.detector, tensor, batch_size, progress=progress)
        for j, i in enumerate(scoreable):
            scores[i] = result.scores[j]
            maps[i] = resize_map(result.maps[j], tuple(items[i]["view"].shape[-2:]))
    threshold = checkpoint.threshold
    calibration = checkpoint.metadata["calibration"]
    ranked = np.sort(scores[np.isfinite(scores)])[::-1]
    if ranked.size == 0:
        study_score = float("nan")
    else:
        study_score = float(ranked[0] if aggregation == "max" else ranked[:top_k].mean())
    volume = checkpoint.metadata["kind"] == "volume"
    return StudyResult(
        names=[f"slice {item['slice']}" if volume else "image" for item in items],
        scores=scores,
        normalized=np.where(np.isnan(scores), np.nan, normalized_score(np.nan_to_num(scores), calibration)),
        flagged=_above(scores, threshold),
        views=[item["view"] for item in items],
        maps=maps,
        threshold=threshold,
        study_score=study_score,
        study_flagged=bool(np.isfinite(study_score) and study_score > threshold),
        slice_indices=[int(item["slice"]) for item in items],
        geometry=geometry,
    )


def _match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1 and channels == 3:
        return np.repeat(image, 3, axis=0)
    return image.mean(axis=0, keepdims=True)
