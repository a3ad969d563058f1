"""`kdmed profile-inputs`: give a checkpoint trained before the out-of-distribution guard its training-input
profile, from the same splits training used (`kdmed.input_profile`; training writes it itself now)."""

from __future__ import annotations

import dataclasses

from kdmed.checkpoint import load_checkpoint, save_checkpoint
from kdmed.config import Params
from kdmed.data.slices import load_split
from kdmed.errors import CheckpointError
from kdmed.input_profile import profile_inputs
from kdmed.paths import checkpoint_path
from kdmed.train import training_images

__all__ = ["backfill_profile"]


def backfill_profile(params: Params, dataset: str, method: str, replace: bool = False) -> dict:
    """Compute and store the profile of `dataset`/`method`'s checkpoint; the weights, calibration and
    everything else in it stay as they are (the file is rewritten atomically)."""
    path = checkpoint_path(params, dataset, method)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train it first: kdmed train --dataset {dataset} --method {method}"
        )
    checkpoint = load_checkpoint(path)
    header = checkpoint.header
    if header.serving.input_profile is not None and not replace:
        return {
            "checkpoint": str(path),
            "changed": False,
            "threshold": header.serving.input_profile.threshold,
        }
    processed = params.preprocess.out_dir
    train_images = training_images(params, load_split(processed, dataset, "train"))
    validation = load_split(processed, dataset, "val").normals().images
    batch_size = params.method(method, dataset).batch_size
    profile = profile_inputs(checkpoint.detector, train_images, validation, batch_size, params.common.seed)
    serving = dataclasses.replace(header.serving, input_profile=profile)
    save_checkpoint(path, checkpoint.detector, dataclasses.replace(header, serving=serving))
    return {"checkpoint": str(path), "changed": True, "threshold": profile.threshold}
