"""The one training loop, shared by every method (read it top to bottom, nanoGPT-style).

Per epoch: shuffle the normal training slices (seeded), step the optimiser on `detector.loss`, then every
`validate_every` epochs compute the method's selection value on held-out validation normals and keep the
best student. CUDA with mixed precision when available, the CPU otherwise. After the last epoch the best
weights are calibrated on the validation split (threshold, score statistics) and written, with everything
needed to score, as one atomic safetensors checkpoint. An interrupted run resumes from its last epoch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from kdmed import atomic
from kdmed.augment import augment_batch
from kdmed.calibration import calibrate
from kdmed.checkpoint import save_checkpoint
from kdmed.config import OptimizerConfig, Params
from kdmed.config_schema import to_plain
from kdmed.contract import TrainingRecord
from kdmed.data.arrays import to_model_input
from kdmed.data.slices import SliceSet, load_split
from kdmed.distributed import SINGLE, Distributed, local_batch, start, stop, wrap
from kdmed.errors import TrainingDivergedError
from kdmed.inference import batched, predict_images, selection_value
from kdmed.input_profile import profile_inputs
from kdmed.models.base import Detector
from kdmed.models.registry import build_detector
from kdmed.paths import checkpoint_path, processed_summary_path, train_log_path, train_state_path
from kdmed.resume import FitState, restore_state, save_state, trainable_state
from kdmed.runtime import amp_dtype, autocast, configure_threads, seed_everything
from kdmed.serving_header import checkpoint_header

log = logging.getLogger(__name__)

__all__ = ["FitSettings", "FitState", "fit", "make_optimizer", "train_stage", "trainable_state"]

HISTORY_COLUMNS = ("epoch", "loss", "val_selection", "images_per_s", "seconds")


@dataclass(frozen=True)
class FitSettings:
    """How one run trains: the loop's settings, apart from the detector and the images."""

    epochs: int
    batch_size: int
    optimizer: OptimizerConfig
    device: torch.device
    amp: torch.dtype | None
    seed: int
    validate_every: int = 1  # epochs between checkpoint-selection passes (the last epoch is always one)
    state_file: Path | None = None  # resume point; None: no resuming
    desc: str = "train"
    teacher_cache_mb: int = 0
    keep: str = "best_validation"  # or "last"
    augment: tuple[str, ...] = ()
    method_settings: Any = None  # the method's params section, compared on resume (a dataclass or dict)
    distributed: Distributed = SINGLE  # torchrun's ranks (kdmed.distributed); rank 0 alone validates

    def hyperparameters(self) -> dict[str, Any]:
        """What defines the training trajectory, compared with a resume point's before continuing it.
        Leaves out what may change between an interruption and its continuation without changing the
        weights: the epoch count, the selection interval, the device and the teacher-cache budget."""
        return {
            "optimizer": to_plain(self.optimizer),
            "batch_size": self.batch_size,
            "seed": self.seed,
            "amp": str(self.amp),
            "keep": self.keep,
            "augment": list(self.augment),
            "method": to_plain(self.method_settings) if self.method_settings is not None else None,
        }


def make_optimizer(parameters, config: OptimizerConfig) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


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

    def features(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in detector.teacher_features(batch).items()}

    parts = batched(features, images, batch_size, device, amp)
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def fit(
    detector: Detector, train_images: torch.Tensor, val_images: torch.Tensor, run: FitSettings
) -> FitState:
    """Train the student on normal images; returns the weights to keep: the best by the selection value
    on `val_images` (held-out normals), or the last epoch's when `run.keep` is "last". `run.augment` names
    `kdmed.augment` transforms applied to every batch; the teacher cache is bypassed then."""
    generator = seed_everything(run.seed)
    # channels_last: the same arithmetic in NHWC order, 1.4x (64 px, batch 8) to 1.7x (96 px, batch 16)
    # faster per STPM training step on a 2-core CPU (Lite0's depthwise convolutions); undone on return
    detector.to(run.device, memory_format=torch.channels_last).train()
    try:
        return _fit(detector, train_images, val_images, run, generator)
    finally:
        detector.to(memory_format=torch.contiguous_format)


def _fit(detector, train_images, val_images, run: FitSettings, generator) -> FitState:
    cached = None
    if run.augment:
        log.info(
            "%s: augmenting with %s, so the teacher runs on every batch (no feature cache)",
            run.desc,
            run.augment,
        )
    else:
        cached = cache_teacher_features(detector, train_images, run.device, run.amp, run.teacher_cache_mb)
    optimizer = make_optimizer(detector.trainable_parameters(), run.optimizer)
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp == torch.float16)
    state = FitState()
    if run.state_file is not None and run.state_file.is_file():
        state = restore_state(run.state_file, detector, optimizer, generator, run.hyperparameters(), run.desc)
    loss_module = wrap(detector, run.distributed, run.device)
    for epoch in range(state.epoch + 1, run.epochs + 1):
        record = _train_epoch(loss_module, train_images, cached, optimizer, scaler, generator, run, epoch)
        if not run.distributed.is_main:
            state.epoch = epoch
            continue
        if epoch % run.validate_every == 0 or epoch == run.epochs:
            value = selection_value(detector, val_images, run.batch_size, run.amp)
            record["val_selection"] = value
            if value < state.best_value or run.keep == "last":
                state.best_value, state.best_epoch = value, epoch
                state.best_state = trainable_state(detector)
        state.history.append(record)
        state.epoch = epoch
        log.info(
            "%s epoch %d: loss %.5f, val %s, %.1f img/s",
            run.desc,
            epoch,
            record["loss"],
            record["val_selection"],
            record["images_per_s"],
        )
        # Resume points at selection epochs only: on a tiny dataset (one step per epoch) writing the whole
        # student and optimiser state every epoch would cost more than the training itself.
        if run.state_file is not None and record["val_selection"] is not None:
            save_state(run.state_file, state, detector, optimizer, generator, run.hyperparameters())
    return state


def _train_epoch(
    loss_module, train_images, cached, optimizer, scaler, generator, run: FitSettings, epoch: int
) -> dict:
    """One pass over the shuffled training images (the last partial batch dropped, as the official
    loaders do); returns the epoch's record for the training log. Under torchrun each rank steps on its
    share of every global batch (`kdmed.distributed.local_batch`) and DDP averages the gradients."""
    n, batch_size, ranks = train_images.shape[0], run.batch_size, run.distributed
    steps_per_epoch = max(1, n // batch_size)
    order = torch.randperm(n, generator=generator)
    started, seen, total_loss = time.perf_counter(), 0, 0.0
    bar = tqdm(
        total=steps_per_epoch * batch_size,
        desc=f"{run.desc} epoch {epoch}/{run.epochs}",
        unit="img",
        mininterval=2.0,
        leave=False,
        disable=not ranks.is_main,
    )
    for step in range(steps_per_epoch):
        index = local_batch(order, step, batch_size, ranks)
        images = train_images[index]
        if run.augment:
            images = augment_batch(images, run.augment, generator)
        batch = to_model_input(images).to(run.device, non_blocking=True, memory_format=torch.channels_last)
        teacher = {k: v[index.to(v.device)] for k, v in cached.items()} if cached is not None else None
        with autocast(run.device, run.amp):
            loss = loss_module(batch, teacher)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"{run.desc}: the loss became {loss.item()} at epoch {epoch}, step {step}; "
                "lower the learning rate in params.yaml."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += batch.shape[0] * ranks.world_size
        total_loss += float(loss.detach()) * batch.shape[0] * ranks.world_size  # rank 0's share's loss
        bar.update(batch.shape[0] * ranks.world_size)
        rate = seen / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", img_s=f"{rate:.1f}")
    bar.close()
    seconds = time.perf_counter() - started
    return {
        "epoch": epoch,
        "loss": total_loss / max(seen, 1),
        "images_per_s": seen / max(seconds, 1e-9),
        "seconds": seconds,
        "val_selection": None,
    }


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


def training_images(params: Params, train_set: SliceSet) -> torch.Tensor:
    """The normal training slices, or a seeded subset of `train.max_train_images` of them."""
    images = train_set.normals().images
    if params.train.max_train_images and images.shape[0] > params.train.max_train_images:
        keep = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(params.common.seed))
        images = images[keep[: params.train.max_train_images].sort().values]
    return images


def train_stage(params: Params, dataset: str, method: str) -> dict | None:
    """The `train` stage for one dataset x method: fit, calibrate on validation, write the checkpoint.
    Under torchrun (`kdmed.distributed`) every rank trains and rank 0 alone calibrates and writes; the
    other ranks return None."""
    configure_threads(params.common.num_threads)
    ranks, device = start(params.common.device)
    try:
        return _train_stage(params, dataset, method, ranks, device)
    finally:
        stop(ranks)


def _train_stage(params: Params, dataset: str, method: str, ranks: Distributed, device) -> dict | None:
    method_config = params.method(method, dataset)
    amp = amp_dtype(device, params.common.amp)
    processed = params.preprocess.out_dir
    train_set, val_set = load_split(processed, dataset, "train"), load_split(processed, dataset, "val")
    train_images = training_images(params, train_set)
    seed_everything(params.common.seed)
    detector = build_detector(method, method_config)
    batch_size = min(method_config.batch_size, train_images.shape[0])
    epochs = epochs_for(params.train.epochs, params.train_steps(dataset), train_images.shape[0], batch_size)
    run = FitSettings(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=method_config.optimizer,
        device=device,
        amp=amp,
        seed=params.common.seed,
        validate_every=validation_interval(
            params.train.validate_every, params.train.selection_passes, epochs
        ),
        state_file=train_state_path(dataset, method) if params.train.resume else None,
        desc=f"{dataset}/{method}",
        teacher_cache_mb=params.train.teacher_cache_mb,
        keep=params.train.checkpoint,
        augment=params.train.augment,
        method_settings=method_config,
        distributed=ranks,
    )
    started = time.perf_counter()
    state = fit(detector, train_images, val_set.normals().images, run)
    seconds = time.perf_counter() - started
    if not ranks.is_main:
        return None
    detector.load_state_dict({**detector.state_dict(), **state.best_state}, strict=True)
    calibration = calibrate_on_validation(params, dataset, detector, val_set, batch_size, amp)
    channels = int(json.loads(processed_summary_path(params, dataset).read_text())["channels"])
    record = TrainingRecord(
        epochs=epochs,
        steps=epochs * max(1, train_images.shape[0] // batch_size),
        best_epoch=state.best_epoch,
        best_val_selection=state.best_value,
        train_images=int(train_images.shape[0]),
        seconds=seconds,
        device=str(device),
        amp=str(amp) if amp else "off",
        augment=tuple(params.train.augment),
        processes=ranks.world_size,
    )
    profile = profile_inputs(detector, train_images, val_set.normals().images, batch_size, params.common.seed)
    header = checkpoint_header(
        params, dataset, detector, calibration, channels=channels, training=record, input_profile=profile
    )
    save_checkpoint(checkpoint_path(params, dataset, method), detector, header)
    write_history(train_log_path(params, dataset, method), state.history)
    if run.state_file is not None and run.state_file.exists():
        run.state_file.unlink()
    return {
        "checkpoint": str(checkpoint_path(params, dataset, method)),
        "best_epoch": state.best_epoch,
        "threshold": calibration.threshold,
        "seconds": round(seconds, 1),
    }


def calibrate_on_validation(
    params: Params, dataset: str, detector: Detector, val_set: SliceSet, batch_size, amp
):
    """The operating point and normal map level from the validation split only (`kdmed.calibration`)."""
    validation = predict_images(detector, val_set.images, batch_size, amp)
    normal, anomalous = val_set.labels == 0, val_set.labels == 1
    return calibrate(
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


def write_history(path: Path, history: list[dict]) -> None:
    """The per-epoch training log (`dvc plots`); an epoch without a selection pass has an empty value."""
    rows = [{k: ("" if row[k] is None else row[k]) for k in HISTORY_COLUMNS} for row in history]
    atomic.write_csv(path, rows, columns=HISTORY_COLUMNS)
