"""The review app's computations (the app renders only): the model catalogue, the operating point the
reader moves, and the on-demand Captum explanation of one slice for MKD."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdmed.checkpoint import list_checkpoints


@dataclass(frozen=True)
class ModelCard:
    """One trained checkpoint as the reader sees it."""

    path: Path
    method: str
    backbone: str
    dataset: str
    kind: str  # "volume" or "image"
    trained_at: str
    threshold: float
    validation: dict[str, Any]  # calibration: specificity, sensitivity, normals, anomalies
    test: dict[str, Any]  # the evaluate stage's metrics when its report is found beside the model

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.method} ({self.backbone}), trained {self.trained_at[:10]}"

    def details(self) -> dict[str, str]:
        """Rows for the model page: what it is, when it was trained and how it did on held-out data."""
        v, t = self.validation, self.test

        def pct(value) -> str:
            return "-" if value is None else f"{100 * float(value):.1f} %"

        return {
            "method / teacher": f"{self.method} / {self.backbone}",
            "trained on": f"{self.dataset} ({'3D volumes' if self.kind == 'volume' else '2D images'})",
            "trained at": self.trained_at,
            "threshold": f"{self.threshold:.4g} ({v.get('rule', '?')} rule)",
            "validation specificity": f"{pct(v.get('validation_specificity'))} of {v.get('validation_normals', '?')} normals",
            "validation sensitivity": pct(v.get("validation_sensitivity")),
            "test image AUROC": pct(t.get("image_auroc")),
            "test pixel AUROC": pct(t.get("pixel_auroc")),
            "file": str(self.path),
        }


def model_cards(models_dir: str | Path, reports_dir: str | Path | None = None) -> list[ModelCard]:
    """Every readable checkpoint under `models_dir` (newest first), with the evaluate stage's test metrics
    from `reports_dir/<dataset>/<method>/metrics.json` when present."""
    cards = []
    for path, meta in list_checkpoints(models_dir):
        test = {}
        if reports_dir is not None:
            report = Path(reports_dir) / str(meta.get("dataset")) / str(meta.get("method")) / "metrics.json"
            try:
                test = json.loads(report.read_text()) if report.is_file() else {}
            except (OSError, ValueError):
                test = {}
        cards.append(
            ModelCard(
                path=path,
                method=str(meta.get("method", "?")),
                backbone=str(meta.get("architecture", {}).get("backbone", "?")),
                dataset=str(meta.get("dataset", "?")),
                kind=str(meta.get("kind", "?")),
                trained_at=str(meta.get("training", {}).get("trained_at", "?")),
                threshold=float(meta.get("calibration", {}).get("threshold", math.nan)),
                validation=dict(meta.get("calibration", {})),
                test=test,
            )
        )
    return cards


def operating_threshold(calibration: dict, level: float) -> float:
    """The raw-score threshold at normalised score `level` (0.5 = the calibrated threshold; lower levels
    flag more slices): the inverse of `kdmed.calibration.normalized_score`."""
    level = min(max(float(level), 1e-6), 1 - 1e-6)
    return float(calibration["threshold"] + calibration["scale"] * math.log(level / (1 - level)))


def explain_slice(checkpoint, view: np.ndarray, method: str) -> np.ndarray:
    """MKD only: the Captum attribution map of one slice's score (`method`: saliency, smoothgrad,
    integrated_gradients, guided_backprop), post-processed as the paper does, at the view's size."""
    from kdmed.data.transforms import resize, resize_map, to_model_input
    from kdmed.errors import ConfigError

    if checkpoint.method != "mkd":
        raise ConfigError(f"Captum explanations attribute MKD's score; this model is {checkpoint.method}.")
    size = int(checkpoint.metadata["image_size"])
    channels = int(checkpoint.metadata["channels"])
    image = view if view.shape[0] == channels else np.repeat(view[:1], channels, axis=0)
    model_input = resize(image, size)
    batch = to_model_input(torch.from_numpy(np.ascontiguousarray(model_input, dtype=np.float32))[None])
    detector = checkpoint.detector.eval()
    device = next(detector.parameters()).device
    with torch.random.fork_rng(devices=[]):  # SmoothGrad's noise: the same explanation every time
        torch.manual_seed(0)
        heat = detector.gradient_maps(batch.to(device), method)[0].float().cpu().numpy()
    return resize_map(heat, tuple(view.shape[-2:]))
