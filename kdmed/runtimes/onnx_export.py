"""A checkpoint's scoring forward as one ONNX graph: image in, anomaly maps and image scores out.

The graph is the detector's own `predict` traced at the checkpoint's input size (the batch dimension
left dynamic), map computation included: STPM's product of layer distances, RD4AD's cosine distances and
Gaussian blur, MKD's detection score (its gradient maps need autograd, so an MKD graph carries the
discrepancy map or, for gradient maps, the score alone; `kdmed.runtimes.onnx_detector` takes the maps
from torch then). ONNX Runtime folds BatchNorm into the convolutions and fuses the activations itself
when it loads the graph.

Exports are cached by the checkpoint's content (`cached_export`): the same weights are exported once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import torch

from kdmed import atomic
from kdmed.models.base import Detector

log = logging.getLogger(__name__)

__all__ = ["OPSET", "PredictGraph", "cache_dir", "cached_export", "export", "file_digest"]

OPSET = 17
INPUT, MAPS, SCORES = "images", "maps", "scores"


class PredictGraph(torch.nn.Module):
    """`detector.predict` as a forward returning (maps, scores); `with_maps=False`: scores only."""

    def __init__(self, detector: Detector, with_maps: bool = True) -> None:
        super().__init__()
        self.detector = detector
        self.with_maps = with_maps

    def forward(self, x01: torch.Tensor):
        if not self.with_maps:
            return (self.detector.detection_scores(x01),)
        prediction = self.detector.predict(x01)
        return prediction.maps, prediction.scores


def graph_has_maps(detector: Detector) -> bool:
    """False for MKD with gradient maps (autograd does not export); True otherwise."""
    return getattr(getattr(detector, "config", None), "map", "") != "gradient"


def export(detector: Detector, path: str | Path, image_size: int, channels: int = 3) -> Path:
    """Write `detector`'s scoring graph for (N, channels, image_size, image_size) inputs in [0, 1]."""
    detector = detector.eval()
    with_maps = graph_has_maps(detector)
    example = torch.rand(2, channels, image_size, image_size)
    outputs = [MAPS, SCORES] if with_maps else [SCORES]
    with atomic.atomic_path(path, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        # the graph is traced at this input size on purpose (shape-dependent Python is constant in it);
        # the TorchScript exporter is the one that needs no extra package (the dynamo one needs onnxscript)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            PredictGraph(detector, with_maps),
            (example,),
            str(tmp),
            input_names=[INPUT],
            output_names=outputs,
            dynamic_axes={INPUT: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=OPSET,
            dynamo=False,
        )
    return Path(path)


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where exports are kept: $KDMED_CACHE/onnx, else $XDG_CACHE_HOME or ~/.cache, under kdmed/onnx."""
    root = os.environ.get("KDMED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kdmed"
    )
    return Path(root) / "onnx"


def cached_export(checkpoint_path: str | Path, detector: Detector, image_size: int, channels: int) -> Path:
    """The export of this checkpoint file's weights, made on first use (keyed by the file's SHA-256)."""
    key = f"{file_digest(checkpoint_path)[:32]}-{image_size}-{channels}-opset{OPSET}-torch{torch.__version__}"
    path = cache_dir() / f"{key}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (%s)", checkpoint_path, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        export(detector, path, image_size, channels)
    return path
