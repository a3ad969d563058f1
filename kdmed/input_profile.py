"""The out-of-distribution guard's torch side: pooled teacher features, the profile training stores, and
the check `score_study` runs (the decision rules live in `kdmed.ood`)."""

from __future__ import annotations

import numpy as np
import torch

from kdmed.contract import InputProfile
from kdmed.data.arrays import to_model_input
from kdmed.ood import OodCheck, check_study, fit_profile, sample_evenly

__all__ = ["PROFILE_TRAIN_IMAGES", "profile_inputs", "pooled_teacher_features", "study_check"]

PROFILE_TRAIN_IMAGES = 1000  # a seeded subset is plenty for a per-channel mean and spread


def pooled_teacher_features(detector, images: np.ndarray | torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """(N, D): the teacher's feature maps for uint8 (N, C, S, S) inputs, averaged per channel over each
    layer the method uses, layers concatenated in their order."""
    images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    device = next(detector.parameters()).device
    rows = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x01 = to_model_input(images[start : start + batch_size]).to(device)
            layers = detector.teacher_features(x01)
            rows.append(torch.cat([f.float().mean(dim=(2, 3)) for f in layers.values()], dim=1).cpu())
    return torch.cat(rows).double().numpy() if rows else np.zeros((0, 0))


def profile_inputs(
    detector, train_images: torch.Tensor, validation_normals: torch.Tensor, batch_size: int, seed: int = 0
) -> InputProfile:
    """The training-input profile stored in the checkpoint (`kdmed.ood.fit_profile`): features of up to
    `PROFILE_TRAIN_IMAGES` seeded training normals and of every validation normal."""
    if len(train_images) > PROFILE_TRAIN_IMAGES:
        keep = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))
        train_images = train_images[keep[:PROFILE_TRAIN_IMAGES].sort().values]
    return fit_profile(
        pooled_teacher_features(detector, train_images, batch_size),
        np.asarray(train_images),
        pooled_teacher_features(detector, validation_normals, batch_size),
        np.asarray(validation_normals),
    )


def study_check(detector, profile: InputProfile | None, inputs: np.ndarray) -> OodCheck:
    """The guard on a study's scored uint8 inputs, evenly sampled (`profile.slices_per_study`)."""
    if profile is None or len(inputs) == 0:
        return check_study(profile, np.zeros((0, 0)), inputs[:0])
    sample = inputs[sample_evenly(len(inputs), profile.slices_per_study)]
    return check_study(profile, pooled_teacher_features(detector, sample), sample)
