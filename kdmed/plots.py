"""PNG figures for reports: heat-map overlays of the highest-scoring images with ground-truth contours."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kdmed import atomic  # noqa: E402
from kdmed.contract import Calibration  # noqa: E402
from kdmed.data.slices import SliceSet  # noqa: E402
from kdmed.inference import Scores  # noqa: E402
from kdmed.rules import flag, normalize_per_study  # noqa: E402


def display_image(image_chw: np.ndarray) -> np.ndarray:
    """uint8 (C, H, W) -> (H, W) grey or (H, W, 3) RGB for imshow."""
    image = np.asarray(image_chw)
    return image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)


def save_panel(
    path: str | Path, test: SliceSet, result: Scores, calibration: Calibration, count: int, title: str
) -> None:
    """Two rows per image column: the image with its ground-truth contour, and the heat map overlay,
    scaled by the one rule (`kdmed.rules.normalize_per_study`: per study, floored at the normal level)."""
    threshold = calibration.threshold
    order = np.argsort(-result.scores)[:count]
    columns = max(len(order), 1)
    figure, axes = plt.subplots(2, columns, figsize=(2.2 * columns, 4.8), squeeze=False)
    shown = normalize_per_study(result.maps, test.patients, calibration.map_floor)
    for column, index in enumerate(order):
        image = display_image(test.images[index].numpy())
        for row in (0, 1):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            if row == 1:
                axis.imshow(shown[index], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            if test.masks[index].any():
                axis.contour(test.masks[index], levels=[0.5], colors="lime", linewidths=0.8)
            axis.set_xticks([])
            axis.set_yticks([])
        verdict = "FLAG" if flag([result.scores[index]], threshold)[0] else "ok"
        label = "anomalous" if test.labels[index] == 1 else "normal"
        axes[0, column].set_title(f"{label}\n{result.scores[index]:.3g} {verdict}", fontsize=7)
    figure.suptitle(f"{title} (green: ground truth; threshold {threshold:.3g})", fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    atomic.write_bytes(path, buffer.getvalue())
