"""Every method learns normal tissue: after a short training on normal demo brain slices, a bright round
lesion painted into clean held-out slices raises every slice's score, and the map separates the lesion's
pixels from the same pixels of the clean slice (pixel AUROC well above chance).

The teacher must be a real ImageNet network for this to mean anything. EfficientNet-Lite0's weights ship
in a package, so all three methods are always tested with it. The papers' teachers (ResNet-18,
Wide-ResNet-50-2, VGG-16) run the same test when their torchvision weight files are in the torch hub cache
and skip with the file and folder to fill otherwise: tests never download, and a random teacher's features
do not make the property hold (the mechanics with random teachers are covered in test_detectors.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from kdmed.config import (
    ATTRIBUTION_METHODS,
    AttributionConfig,
    MkdConfig,
    OptimizerConfig,
    Rd4adConfig,
    StpmConfig,
)
from kdmed.data.slices import load_split
from kdmed.data.transforms import to_model_input
from kdmed.errors import WeightsNotFoundError
from kdmed.inference import predict_images
from kdmed.models.attribution import raw_attributions
from kdmed.models.maps import smooth_attributions
from kdmed.models.mkd import LITE0_CRITICAL_POINTS
from kdmed.models.registry import METHOD_NAMES, build_detector
from kdmed.models.weights import resolve_weight_file
from kdmed.rules import normalize_per_study
from kdmed.train import FitSettings, fit

# The slow tier: each detector trains (30 to 150 epochs of 32 slices) before its first test.
pytestmark = pytest.mark.slow

# Epochs of the 32 training slices at batch 8 (4 optimiser steps each). STPM gets 150, the demo's brain
# budget of 600 steps: after 30 or 60 epochs its Lite0 maps do not yet single out the lesion (seeds 0-5 on
# a 2-core Xeon with AMX, 2026-12-05: at 30 epochs 1 of 4 seeds raised every slice, lesion-pixel AUROC
# 0.45-0.72; at 150 epochs 6 of 6 seeds did, AUROC 0.89-0.99). RD4AD and MKD pass every seed at 30.
EPOCHS = {"stpm": 150, "rd4ad": 30, "mkd": 30}
METHODS = list(METHOD_NAMES)
PAPER_BACKBONES = ["resnet18", "wide_resnet50_2", "vgg16"]
OPTIMIZERS = {  # the papers' optimisers at a batch of 8
    "stpm": OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
    "rd4ad": OptimizerConfig(name="adam", lr=0.005, betas=(0.5, 0.999)),
    "mkd": OptimizerConfig(name="adam", lr=0.001),
}


def lesion_config(method: str, backbone: str):
    if method == "stpm":
        return StpmConfig(backbone=backbone)
    if method == "rd4ad":
        return Rd4adConfig(backbone=backbone)
    layers = LITE0_CRITICAL_POINTS if backbone == "efficientnet_lite0" else ()
    return MkdConfig(backbone=backbone, layers=layers, input_normalization="backbone")


def require_imagenet_weights(backbone: str) -> None:
    try:
        resolve_weight_file(backbone, "imagenet")
    except WeightsNotFoundError as error:
        pytest.skip(f"no ImageNet weights for {backbone} on this machine: {error}")


@pytest.fixture(scope="module")
def lesion_slices(tiny_brain):
    train = load_split(tiny_brain.preprocess.out_dir, "brain", "train")
    test = load_split(tiny_brain.preprocess.out_dir, "brain", "test").normals()
    size = test.images.shape[-1]
    order = np.argsort(-(test.images[:, 0] > 20).flatten(1).sum(1).numpy())[:6]  # most tissue first
    clean = test.images[torch.from_numpy(order.copy())].clone()
    yy, xx = np.mgrid[:size, :size]
    lesion = (yy - 0.42 * size) ** 2 + (xx - 0.6 * size) ** 2 <= (size / 9) ** 2
    injected = clean.clone()
    injected[:, :, torch.from_numpy(lesion)] = 235
    return train.images, clean, injected, lesion


@pytest.fixture(scope="module")
def trained(lesion_slices):
    """trained(method, backbone) -> that detector after the short training on normal slices (once)."""
    train = lesion_slices[0]
    models = {}

    def get(method: str, backbone: str):
        if (method, backbone) not in models:
            torch.manual_seed(0)
            model = build_detector(method, lesion_config(method, backbone))
            fit(
                model,
                train,
                train[:8],
                FitSettings(
                    epochs=EPOCHS[method],
                    batch_size=8,
                    teacher_cache_mb=512,
                    optimizer=OPTIMIZERS[method],
                    device=torch.device("cpu"),
                    amp=None,
                    seed=0,
                ),
            )
            models[method, backbone] = model.eval()
        return models[method, backbone]

    return get


def check_lesion_stands_out(method: str, backbone: str, lesion_slices, trained) -> None:
    _, clean, injected, lesion = lesion_slices
    model = trained(method, backbone)
    before, after = predict_images(model, clean), predict_images(model, injected)
    assert np.all(after.scores > before.scores), (before.scores, after.scores)
    clean_pixels, lesion_pixels = before.maps[:, lesion].ravel(), after.maps[:, lesion].ravel()
    labels = np.r_[np.zeros(clean_pixels.size), np.ones(lesion_pixels.size)]
    separation = roc_auc_score(labels, np.r_[clean_pixels, lesion_pixels])
    assert separation > 0.8, (
        f"{method}/{backbone}: lesion pixels vs the same clean pixels AUROC {separation:.3f}"
    )


@pytest.mark.parametrize("method", METHODS)
def test_injected_lesion_stands_out_with_the_offline_teacher(method, lesion_slices, trained):
    check_lesion_stands_out(method, "efficientnet_lite0", lesion_slices, trained)


@pytest.mark.parametrize("backbone", PAPER_BACKBONES)
@pytest.mark.parametrize("method", METHODS)
def test_injected_lesion_stands_out_with_the_papers_teachers(method, backbone, lesion_slices, trained):
    require_imagenet_weights(backbone)
    check_lesion_stands_out(method, backbone, lesion_slices, trained)


# Measured on this training (6 slices, shares as multiples of the lesion's area fraction 0.039):
# saliency 1.3-2.3x, integrated gradients 3.5-5.0x, lesion-vs-clean pixel AUROC 0.88 / 0.86; SmoothGrad and
# guided backpropagation put no more mass on the lesion than on the same pixels of the clean slice (AUROC
# 0.48 / 0.58; the same with a 128 px, 700-step training). Guided backpropagation is known to reconstruct
# image structure rather than follow the score (Adebayo et al., NeurIPS 2018, "Sanity checks for saliency
# maps"); their failure is recorded with strict xfails, which fail the day the property starts to hold.
FOLLOWS_THE_SCORE = {
    "saliency": True,
    "integrated_gradients": True,
    "smoothgrad": False,
    "guided_backprop": False,
}


@pytest.mark.parametrize("attribution", ATTRIBUTION_METHODS)
def test_each_attribution_is_non_trivial(attribution, lesion_slices, trained):
    _, _, injected, _ = lesion_slices
    model = trained("mkd", "efficientnet_lite0")
    maps = attribution_maps(model, injected, attribution)
    assert np.isfinite(maps).all() and (maps >= 0).all()
    per_slice = maps.reshape(len(maps), -1)
    assert (per_slice.max(1) > 0).all(), "an attribution map is all zero"
    assert (per_slice.std(1) > 0.05 * per_slice.mean(1)).all(), "an attribution map is flat"


@pytest.mark.parametrize(
    "attribution",
    [
        pytest.param(
            name,
            marks=[]
            if follows
            else pytest.mark.xfail(
                strict=True, reason=f"{name} does not follow the score (see the note above)"
            ),
        )
        for name, follows in FOLLOWS_THE_SCORE.items()
    ],
)
def test_attribution_mass_sits_on_the_injected_lesion(attribution, lesion_slices, trained):
    """Issue 6: with a trained MKD, the share of the post-processed attribution inside the lesion is above
    the lesion's share of the slice on every slice (1.5x on average), and, normalised per study as the app
    shows it, the lesion's pixels are brighter than the same pixels of the clean slices."""
    _, clean, injected, lesion = lesion_slices
    model = trained("mkd", "efficientnet_lite0")
    with_lesion, without = (
        attribution_maps(model, injected, attribution),
        attribution_maps(model, clean, attribution),
    )
    area = float(lesion.mean())
    share = with_lesion[:, lesion].sum(1) / with_lesion.sum((1, 2)) / area
    assert share.min() > 1.2 and share.mean() > 1.5, (attribution, share)
    study = normalize_per_study(np.concatenate([without, with_lesion]), np.zeros(2 * len(clean)), 0.0)
    clean_pixels, lesion_pixels = study[: len(clean), lesion].ravel(), study[len(clean) :, lesion].ravel()
    labels = np.r_[np.zeros(clean_pixels.size), np.ones(lesion_pixels.size)]
    separation = roc_auc_score(labels, np.r_[clean_pixels, lesion_pixels])
    assert separation > 0.8, (attribution, separation)


def attribution_maps(model, images: torch.Tensor, attribution: str) -> np.ndarray:
    """Post-processed maps with fewer SmoothGrad samples and IG steps than the paper's 50 (test speed)."""
    settings = AttributionConfig(smoothgrad_samples=16, ig_steps=16, internal_batch_size=8)
    raw = raw_attributions(model, to_model_input(images), settings, attribution)
    return smooth_attributions(raw, model.config.blur_sigma, model.config.opening).numpy()
