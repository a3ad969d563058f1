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

from kdmed.config import MkdConfig, OptimizerConfig, Rd4adConfig, StpmConfig
from kdmed.data.slices import load_split
from kdmed.errors import WeightsNotFoundError
from kdmed.inference import predict_images
from kdmed.models.registry import build_detector
from kdmed.models.weights import resolve_weight_file
from kdmed.train import fit

EPOCHS = 30
METHODS = ["stpm", "rd4ad", "mkd"]
PAPER_BACKBONES = ["resnet18", "wide_resnet50_2", "vgg16"]
LITE0_CRITICAL_POINTS = ("stage2", "stage3", "stage5", "stage7")
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


def check_lesion_stands_out(method: str, backbone: str, lesion_slices) -> None:
    train, clean, injected, lesion = lesion_slices
    torch.manual_seed(0)
    model = build_detector(method, lesion_config(method, backbone))
    fit(
        model,
        train,
        train[:8],
        epochs=EPOCHS,
        batch_size=8,
        teacher_cache_mb=512,
        optimizer_config=OPTIMIZERS[method],
        device=torch.device("cpu"),
        amp=None,
        seed=0,
    )
    before, after = predict_images(model, clean), predict_images(model, injected)
    assert np.all(after.scores > before.scores), (before.scores, after.scores)
    clean_pixels, lesion_pixels = before.maps[:, lesion].ravel(), after.maps[:, lesion].ravel()
    labels = np.r_[np.zeros(clean_pixels.size), np.ones(lesion_pixels.size)]
    separation = roc_auc_score(labels, np.r_[clean_pixels, lesion_pixels])
    assert separation > 0.8, (
        f"{method}/{backbone}: lesion pixels vs the same clean pixels AUROC {separation:.3f}"
    )


@pytest.mark.parametrize("method", METHODS)
def test_injected_lesion_stands_out_with_the_offline_teacher(method, lesion_slices):
    check_lesion_stands_out(method, "efficientnet_lite0", lesion_slices)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", PAPER_BACKBONES)
@pytest.mark.parametrize("method", METHODS)
def test_injected_lesion_stands_out_with_the_papers_teachers(method, backbone, lesion_slices):
    require_imagenet_weights(backbone)
    check_lesion_stands_out(method, backbone, lesion_slices)
