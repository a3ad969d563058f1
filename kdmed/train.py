"""The one training loop, shared by every method (read it top to bottom, nanoGPT-style).

Per epoch: shuffle the normal training slices (seeded), step the optimiser on `detector.loss`, then every
`validate_every` epochs compute the method's selection value on held-out validation normals and keep the
best student. CUDA with mixed precision when available, the CPU otherwise. After the last epoch the best
weights are calibrated on the validation split (threshold, score statistics) and written, with everything
needed to score, as one atomic safetensors checkpoint. An interrupted run resumes from its last epoch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from tqdm import tqdm

import kdmed
from kdmed import atomic
from kdmed.augment import augment_batch
from kdmed.calibration import calibrate
from kdmed.checkpoint import save_checkpoint
from kdmed.config import OptimizerConfig, Params
from kdmed.config_schema import to_plain
from kdmed.contract import (
    Calibration,
    CheckpointHeader,
    ModelCard,
    Preprocessing,
    ServingContract,
    StudyAggregation,
    TrainingRecord,
)
from kdmed.data.adapters import adapter_reads_volumes
from kdmed.data.preprocess import slice_policy
from kdmed.data.slices import load_split, split_path
from kdmed.data.transforms import to_model_input
from kdmed.errors import TrainingDivergedError
from kdmed.inference import predict_images, selection_value
from kdmed.models.base import Detector
from kdmed.models.registry import build_detector
from kdmed.runtime import amp_dtype, autocast, configure_threads, resolve_device, seed_everything

log = logging.getLogger(__name__)


@dataclass
class FitState:
    """Everything an interrupted run needs to continue exactly where it stopped."""

    epoch: int = 0
    best_epoch: int = 0
    best_value: float = float("inf")
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict] = field(default_factory=list)


def make_optimizer(parameters, config: OptimizerConfig) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def trainable_state(detector: Detector) -> dict[str, torch.Tensor]:
    """The student's weights and buffers (the teacher never changes), copied to the CPU."""
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in detector.state_dict().items()
        if not k.startswith("teacher.")
    }


def cache_teacher_features(
    detector: Detector,
    images: torch.Tensor,
    device: torch.device,
    amp: torch.dtype | None,
    budget_mb: int,
    batch_size: int = 32,
):
    """The teacher's features for every training image, kept on `device`, when they fit in `budget_mb`.

    Exact, not an approximation: the teacher is frozen in eval mode and, without augmentation (`fit`
    bypasses the cache when augmenting), each image's teacher features are the same in every epoch. Saves the teacher's forward pass
    (about a quarter of a training step). Returns None when over budget or disabled (budget 0)."""
    need = detector.teacher_feature_bytes(*images.shape[-2:]) * images.shape[0]
    if budget_mb <= 0 or need > budget_mb * 2**20:
        return None
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, images.shape[0], batch_size):
        batch = to_model_input(images[start : start + batch_size]).to(device)
        with autocast(device, amp):
            parts.append({k: v.float() for k, v in detector.teacher_features(batch).items()})
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def fit(
    detector: Detector,
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer_config: OptimizerConfig,
    device: torch.device,
    amp: torch.dtype | None,
    seed: int,
    validate_every: int = 1,
    state_file: Path | None = None,
    desc: str = "train",
    teacher_cache_mb: int = 0,
    keep: str = "best_validation",
    augment: tuple[str, ...] = (),
) -> FitState:
    """Train the student on normal images; returns the weights to keep: the best by the selection value
    on `val_images` (held-out normals), or the last epoch's when `keep` is "last". `augment` names
    `kdmed.augment` transforms applied to every batch; the teacher cache is bypassed then."""
    generator = seed_everything(seed)
    detector.to(device).train()
    cached = None
    if augment:
        log.info(
            "%s: augmenting with %s, so the teacher runs on every batch (no feature cache)", desc, augment
        )
    else:
        cached = cache_teacher_features(detector, train_images, device, amp, teacher_cache_mb)
    optimizer = make_optimizer(detector.trainable_parameters(), optimizer_config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    state = FitState()
    if state_file is not None and state_file.is_file():
        state = _restore(state_file, detector, optimizer, generator)
        log.info("resuming %s from epoch %d (%s)", desc, state.epoch, state_file)
    n = train_images.shape[0]
    steps_per_epoch = max(1, n // batch_size)  # drop the last partial batch, as the official loaders do
    for epoch in range(state.epoch + 1, epochs + 1):
        order = torch.randperm(n, generator=generator)
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        bar = tqdm(
            total=steps_per_epoch * batch_size,
            desc=f"{desc} epoch {epoch}/{epochs}",
            unit="img",
            mininterval=2.0,
            leave=False,
        )
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            images = train_images[index]
            if augment:
                images = augment_batch(images, augment, generator)
            batch = to_model_input(images).to(device, non_blocking=True)
            teacher = {k: v[index.to(v.device)] for k, v in cached.items()} if cached is not None else None
            with autocast(device, amp):
                loss = detector.loss(batch, teacher)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"{desc}: the loss became {loss.item()} at epoch {epoch}, step {step}; "
                    "lower the learning rate in params.yaml."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += batch.shape[0]
            total_loss += float(loss.detach()) * batch.shape[0]
            rate = seen / max(time.perf_counter() - started, 1e-9)
            bar.update(batch.shape[0])
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", img_s=f"{rate:.1f}")
        bar.close()
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "loss": total_loss / max(seen, 1),
            "images_per_s": seen / max(seconds, 1e-9),
            "seconds": seconds,
            "val_selection": None,
        }
        if epoch % validate_every == 0 or epoch == epochs:
            value = selection_value(detector, val_images, batch_size, amp)
            record["val_selection"] = value
            if value < state.best_value or keep == "last":
                state.best_value, state.best_epoch = value, epoch
                state.best_state = trainable_state(detector)
        state.history.append(record)
        state.epoch = epoch
        log.info(
            "%s epoch %d: loss %.5f, val %s, %.1f img/s",
            desc,
            epoch,
            record["loss"],
            record["val_selection"],
            record["images_per_s"],
        )
        # Resume points at selection epochs only: on a tiny dataset (one step per epoch) writing the whole
        # student and optimiser state every epoch would cost more than the training itself.
        if state_file is not None and record["val_selection"] is not None:
            _save_state(state_file, state, detector, optimizer, generator)
    return state


def _save_state(path: Path, state: FitState, detector: Detector, optimizer, generator) -> None:
    payload = {
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_value": state.best_value,
        "best_state": state.best_state,
        "history": json.dumps(state.history),
        "student": trainable_state(detector),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic.write_bytes(path, buffer.getvalue())


def _restore(path: Path, detector: Detector, optimizer, generator) -> FitState:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    detector.load_state_dict(payload["student"], strict=False)
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["generator"])
    return FitState(
        epoch=payload["epoch"],
        best_epoch=payload["best_epoch"],
        best_value=payload["best_value"],
        best_state=payload["best_state"],
        history=json.loads(payload["history"]),
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


def checkpoint_path(params: Params, dataset: str, method: str) -> Path:
    return Path(params.train.out_dir) / dataset / method / "model.safetensors"


def epochs_for(epochs: int, steps: int, images: int, batch_size: int) -> int:
    """Whole epochs to train: `epochs`, or, when `steps` > 0, enough epochs for that many optimiser steps
    (so that datasets of different sizes get the same amount of training)."""
    if steps <= 0:
        return epochs
    per_epoch = max(1, images // batch_size)
    return max(1, -(-steps // per_epoch))


def validation_interval(validate_every: int, selection_passes: int, epochs: int) -> int:
    """Epochs between checkpoint-selection passes: `validate_every`, or, when `selection_passes` > 0,
    whatever spreads that many passes over `epochs` (the last epoch is always a pass)."""
    if selection_passes <= 0:
        return validate_every
    return max(1, epochs // selection_passes)


def train_log_path(params: Params, dataset: str, method: str) -> Path:
    """Per-epoch training curves, beside the evaluation reports (git-tracked, small, for `dvc plots`)."""
    return Path(params.evaluate.out_dir) / dataset / method / "train_log.csv"


def train_stage(params: Params, dataset: str, method: str) -> dict:
    """The `train` stage for one dataset x method: fit, calibrate on validation, write the checkpoint."""
    configure_threads(params.common.num_threads)
    method_config = params.method(method, dataset)
    device = resolve_device(params.common.device)
    amp = amp_dtype(device, params.common.amp)
    processed = params.preprocess.out_dir
    train_set, val_set = load_split(processed, dataset, "train"), load_split(processed, dataset, "val")
    train_images = train_set.normals().images
    if params.train.max_train_images and train_images.shape[0] > params.train.max_train_images:
        keep = torch.randperm(
            train_images.shape[0], generator=torch.Generator().manual_seed(params.common.seed)
        )
        train_images = train_images[keep[: params.train.max_train_images].sort().values]
    val_normals = val_set.normals()
    seed_everything(params.common.seed)
    detector = build_detector(method, method_config)
    state_file = Path("tmp") / "train_state" / f"{dataset}_{method}.pt" if params.train.resume else None
    batch_size = min(method_config.batch_size, train_images.shape[0])
    epochs = epochs_for(params.train.epochs, params.train.steps, train_images.shape[0], batch_size)
    started = time.perf_counter()
    state = fit(
        detector,
        train_images,
        val_normals.images,
        epochs=epochs,
        batch_size=batch_size,
        optimizer_config=method_config.optimizer,
        device=device,
        amp=amp,
        seed=params.common.seed,
        validate_every=validation_interval(
            params.train.validate_every, params.train.selection_passes, epochs
        ),
        state_file=state_file,
        desc=f"{dataset}/{method}",
        teacher_cache_mb=params.train.teacher_cache_mb,
        keep=params.train.checkpoint,
        augment=params.train.augment,
    )
    seconds = time.perf_counter() - started
    detector.load_state_dict({**detector.state_dict(), **state.best_state}, strict=True)
    validation = predict_images(detector, val_set.images, batch_size, amp)
    normal, anomalous = val_set.labels == 0, val_set.labels == 1
    calibration = calibrate(
        validation.scores[normal],
        validation.scores[anomalous],
        params.dataset(dataset).calibration_rule or params.train.calibration_rule,
        params.train.target_specificity,
        normal_maps=validation.maps[normal],
        map_floor_quantile=params.train.map_floor_quantile,
        target_sensitivity=params.train.target_sensitivity,
        normal_patients=val_set.patients[normal],
        anomaly_patients=val_set.patients[anomalous],
    )
    data_summary = json.loads((Path(processed) / dataset / "summary.json").read_text())
    header = checkpoint_header(
        params,
        dataset,
        detector,
        calibration,
        channels=int(data_summary["channels"]),
        training=TrainingRecord(
            epochs=epochs,
            steps=epochs * max(1, train_images.shape[0] // batch_size),
            best_epoch=state.best_epoch,
            best_val_selection=state.best_value,
            train_images=int(train_images.shape[0]),
            seconds=seconds,
            device=str(device),
            amp=str(amp) if amp else "off",
            augment=tuple(params.train.augment),
        ),
    )
    save_checkpoint(checkpoint_path(params, dataset, method), detector, header)
    _write_history(train_log_path(params, dataset, method), state.history)
    if state_file is not None and state_file.exists():
        state_file.unlink()
    return {
        "checkpoint": str(checkpoint_path(params, dataset, method)),
        "best_epoch": state.best_epoch,
        "threshold": calibration.threshold,
        "seconds": round(seconds, 1),
    }


def checkpoint_header(
    params: Params,
    dataset: str,
    detector: Detector,
    calibration: Calibration,
    channels: int,
    training: TrainingRecord,
) -> CheckpointHeader:
    """The typed header training writes: model card and the serving contract (preprocessing, slice
    policy, calibration, study aggregation, kind), read back by every scoring path."""
    config = params.dataset(dataset)
    processed = params.preprocess.out_dir
    kind = "volume" if adapter_reads_volumes(config.adapter) else "image"
    serving = ServingContract(
        kind=kind,
        preprocessing=Preprocessing(
            image_size=params.common.image_size,
            channels=channels,
            lower_percentile=params.preprocess.lower_percentile,
            upper_percentile=params.preprocess.upper_percentile,
            crop_foreground=params.preprocess.crop_foreground,
            crop_margin=params.preprocess.crop_margin,
            normalization=params.preprocess.normalization,
            robust_iqr_multiple=params.preprocess.robust_iqr_multiple,
            resample_mm=params.preprocess.resample_mm,
            stain_normalization=params.preprocess.stain_normalization,
        ),
        calibration=calibration,
        aggregation=StudyAggregation(params.train.study_aggregation, params.train.top_k),
        slice_policy=slice_policy(config) if kind == "volume" else None,
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


def _write_history(path: Path, history: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["epoch", "loss", "val_selection", "images_per_s", "seconds"])
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in writer.fieldnames})
    atomic.write_text(path, text.getvalue())
