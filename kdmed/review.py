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
from kdmed.contract import Calibration, CheckpointHeader


@dataclass(frozen=True)
class CatalogueEntry:
    """One trained checkpoint as the reader sees it: its header and, when found beside the model, the
    evaluate stage's test metrics."""

    path: Path
    header: CheckpointHeader
    test: dict[str, Any]

    @property
    def label(self) -> str:
        card = self.header.card
        return f"{card.dataset} / {card.method} ({card.backbone}), trained {card.trained_at[:10]}"

    def details(self) -> dict[str, str]:
        """Rows for the model page: what it is, when it was trained and how it did on held-out data."""
        card, serving, t = self.header.card, self.header.serving, self.test
        v = serving.calibration

        def pct(value) -> str:
            return "-" if value is None else f"{100 * float(value):.1f} %"

        rows = {
            "method / teacher": f"{card.method} / {card.backbone}",
            "trained on": f"{card.dataset} ({'3D volumes' if serving.kind == 'volume' else '2D images'})",
            "trained at": card.trained_at,
            "threshold": f"{v.threshold:.4g} ({v.rule} rule)",
            "operating point": v.operating_point(),
            "validation specificity": f"{pct(v.validation_specificity)} of {v.validation_normals} normals",
            "validation sensitivity": pct(v.validation_sensitivity),
            "study score": f"{serving.aggregation.how} of the slice scores"
            + (f" (top {serving.aggregation.top_k})" if serving.aggregation.how == "topk_mean" else ""),
            "test image AUROC": pct(t.get("image_auroc")),
            "test pixel AUROC": pct(t.get("pixel_auroc")),
            "file": str(self.path),
        }
        if serving.slice_policy is not None:
            rows["slices scored"] = serving.slice_policy.describe()
        return rows


def model_catalogue(models_dir: str | Path, reports_dir: str | Path | None = None) -> list[CatalogueEntry]:
    """Every readable checkpoint under `models_dir` (newest first), with the evaluate stage's test metrics
    from `reports_dir/<dataset>/<method>/metrics.json` when present."""
    entries = []
    for path, header in list_checkpoints(models_dir):
        test = {}
        if reports_dir is not None:
            report = Path(reports_dir) / header.card.dataset / header.card.method / "metrics.json"
            try:
                test = json.loads(report.read_text()) if report.is_file() else {}
            except (OSError, ValueError):
                test = {}
        entries.append(CatalogueEntry(path=path, header=header, test=test))
    return entries


def operating_threshold(calibration: Calibration, level: float) -> float:
    """The raw-score threshold at normalised score `level` (0.5 = the calibrated threshold; lower levels
    flag more slices): the inverse of `kdmed.calibration.normalized_score`."""
    level = min(max(float(level), 1e-6), 1 - 1e-6)
    return float(calibration.threshold + calibration.scale * math.log(level / (1 - level)))


@dataclass(frozen=True)
class Explanation:
    """A Captum map of one slice at the view's size, already divided by `scale`; `scaling` names how."""

    heat: np.ndarray
    scale: float
    scaling: str


def explain_slice(checkpoint, result, i: int, method: str) -> Explanation:
    """MKD only: the Captum attribution map (`method`: saliency, smoothgrad, integrated_gradients,
    guided_backprop) of slice `i`'s score, computed on the exact uint8 input that was scored and
    post-processed as the paper does. The attribution MKD serves as its map is scaled by the study's heat
    scale (the one rule); the others have no stored normal level, so they are scaled to this slice's own
    peak, and `scaling` says so."""
    from kdmed.data.transforms import resize_map, to_model_input
    from kdmed.errors import ConfigError, StudyReadError

    if checkpoint.method != "mkd":
        raise ConfigError(f"Captum explanations attribute MKD's score; this model is {checkpoint.method}.")
    row = int(result.input_of[i])
    if row < 0:
        raise StudyReadError(f"{result.names[i]} was not scored ({result.status[i]}): nothing to explain.")
    batch = to_model_input(torch.from_numpy(result.inputs[row : row + 1]))
    detector = checkpoint.detector.eval()
    device = next(detector.parameters()).device
    with torch.random.fork_rng(devices=[]):  # SmoothGrad's noise: the same explanation every time
        torch.manual_seed(0)
        heat = detector.gradient_maps(batch.to(device), method)[0].float().cpu().numpy()
    heat = resize_map(heat, tuple(result.views[i].shape[-2:]))
    config = detector.config
    if config.map == "gradient" and method == config.attribution.method:
        scale, scaling = result.heat_scale, "study scale, floored at the normal level (the served map)"
    else:
        scale = float(heat.max()) or 1.0
        scaling = f"slice peak (option: no normal level is stored for {method})"
    return Explanation(heat=heat / scale, scale=scale, scaling=scaling)
