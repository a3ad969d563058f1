"""The header a training run writes into its checkpoint: the model card and the serving contract
(`kdmed.contract`), everything needed to score without params.yaml."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

import kdmed
from kdmed.config import Params
from kdmed.config_schema import to_plain
from kdmed.contract import (
    Calibration,
    CheckpointHeader,
    InputProfile,
    ModelCard,
    Preprocessing,
    ServingContract,
    StudyAggregation,
    TrainingRecord,
)
from kdmed.data.records import adapter_reads_volumes, slice_policy
from kdmed.data.slices import split_path
from kdmed.models.base import Detector


def checkpoint_header(
    params: Params,
    dataset: str,
    detector: Detector,
    calibration: Calibration,
    channels: int,
    training: TrainingRecord,
    input_profile: InputProfile | None = None,
) -> CheckpointHeader:
    """The typed header training writes: model card and the serving contract (preprocessing, slice
    policy, calibration, study aggregation, kind), read back by every scoring path."""
    config = params.dataset(dataset)
    processed = params.preprocess.out_dir
    kind = "volume" if adapter_reads_volumes(config.adapter) else "image"
    serving = ServingContract(
        kind=kind,
        preprocessing=Preprocessing(
            image_size=params.image_size(dataset),
            channels=channels,
            lower_percentile=params.preprocess.lower_percentile,
            upper_percentile=params.preprocess.upper_percentile,
            crop_foreground=params.preprocess.crop_foreground,
            crop_margin=params.preprocess.crop_margin,
            normalization=params.preprocess.normalization,
            robust_iqr_multiple=params.preprocess.robust_iqr_multiple,
            resample_mm=params.preprocess.resample_mm,
            stain_normalization=params.preprocess.stain_normalization,
            center_crop=config.center_crop if kind == "image" else 1.0,
        ),
        calibration=calibration,
        aggregation=StudyAggregation(params.train.study_aggregation, params.train.top_k),
        slice_policy=slice_policy(config) if kind == "volume" else None,
        input_profile=input_profile,
    )
    card = ModelCard(
        method=detector.method,
        backbone=str(detector.architecture.get("backbone", "?")),
        dataset=dataset,
        teacher_weights=detector.teacher.weights_source,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        kdmed_version=kdmed.__version__,
        torch_version=torch.__version__,
        git_revision=_git_revision(),
        train_data_sha256=_file_digest(split_path(processed, dataset, "train")),
    )
    return CheckpointHeader(
        card=card,
        serving=serving,
        architecture=detector.architecture,
        method_config=to_plain(params.method(detector.method, dataset)),
        dataset_config=to_plain(config),
        training=training,
    )


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
