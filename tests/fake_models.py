"""Checkpoints with random-init teachers for tests of the serving side (`kdmed score`, the app): the real
save/load path and metadata, no training. Speed over meaning: the scores are arbitrary."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from kdmed.checkpoint import save_checkpoint
from kdmed.config import MkdConfig, PreprocessConfig, StpmConfig
from kdmed.contract import (
    Calibration,
    CheckpointHeader,
    ModelCard,
    Preprocessing,
    ServingContract,
    SlicePolicy,
    StudyAggregation,
)
from kdmed.models.mkd import MKD
from kdmed.models.stpm import STPM


def write_checkpoint(
    path: Path,
    kind: str,
    threshold: float = 0.5,
    scale: float = 0.1,
    slice_axis: int = 2,
    method: str = "stpm",
    dataset: str = "demo",
    map_floor: float = 0.0,
    slice_range: tuple[int, int] | None = None,
    min_foreground_pixels: int = 50,
    center_crop: float = 1.0,
    channels: int = 1,
    trained_at: str = "2026-11-22T00:00:00+00:00",
) -> Path:
    """A random ResNet-18 STPM (or MKD) checkpoint for 64 px volumes or 2D images (one channel unless
    `channels` says 3: a colour model)."""
    torch.manual_seed(0)
    if method == "mkd":
        detector = MKD(MkdConfig(backbone="resnet18", weights="random"))
    else:
        detector = STPM(StpmConfig(backbone="resnet18", weights="random"))
    first, last = slice_range if slice_range is not None else (0, None)
    header = CheckpointHeader(
        card=ModelCard(
            method=method,
            backbone="resnet18",
            dataset=dataset,
            teacher_weights="random",
            trained_at=trained_at,
        ),
        serving=ServingContract(
            kind=kind,
            preprocessing=Preprocessing(
                image_size=64, channels=channels, center_crop=center_crop, **_preprocess_fields()
            ),
            calibration=Calibration(
                rule="specificity",
                target_specificity=0.95,
                threshold=threshold,
                scale=scale,
                map_floor=map_floor,
                validation_specificity=0.95,
            ),
            aggregation=StudyAggregation(),
            slice_policy=SlicePolicy(slice_axis, first, last, min_foreground_pixels)
            if kind == "volume"
            else None,
        ),
        architecture=detector.architecture,
    )
    save_checkpoint(path, detector, header)
    return path


def _preprocess_fields() -> dict:
    config = PreprocessConfig()
    return {
        "lower_percentile": config.lower_percentile,
        "upper_percentile": config.upper_percentile,
        "crop_foreground": config.crop_foreground,
        "crop_margin": config.crop_margin,
        "normalization": config.normalization,
        "robust_iqr_multiple": config.robust_iqr_multiple,
        "resample_mm": config.resample_mm,
    }


def nifti_bytes(shape=(40, 40, 12)) -> bytes:
    volume = np.zeros(shape, np.float32)
    rng = np.random.default_rng(0)
    volume[8:32, 6:34, 2:10] = 100 + rng.normal(0, 5, (24, 28, 8))
    volume[14:22, 12:20, 5:8] += 80  # a bright blob on three slices
    return nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])).to_bytes()


def model_at_median(
    models: Path, kind: str, study_source, method: str = "stpm", map_floor: float = 0.0
) -> Path:
    """A checkpoint whose threshold is the median score of `study_source`, so about half its slices flag."""
    path = models / "demo" / method / "model.safetensors"
    write_checkpoint(path, kind, method=method)
    from kdmed.checkpoint import load_checkpoint
    from kdmed.inference import score_study
    from kdmed.io import load_study

    result = score_study(load_checkpoint(path), load_study(study_source))
    scores = result.scores[np.isfinite(result.scores)]
    write_checkpoint(
        path,
        kind,
        threshold=float(np.median(scores)),
        scale=float(np.std(scores)) or 1.0,
        method=method,
        map_floor=map_floor,
    )
    return path
