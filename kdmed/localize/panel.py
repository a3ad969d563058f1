"""The localisation comparison figure: per lesion image, the image, its mask and every map side by side."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kdmed import atomic  # noqa: E402
from kdmed.data.slices import SliceSet  # noqa: E402
from kdmed.plots import display_image  # noqa: E402


def save_comparison_panel(
    path: str | Path, test: SliceSet, maps: dict[str, np.ndarray], count: int, title: str
) -> None:
    """One row per image (the largest lesions first): image, mask, then each map on the same [0, 1] scale
    (maps are already normalised per study), with the mask's outline on every map."""
    area = test.masks.reshape(len(test), -1).sum(1) * (test.labels == 1)
    order = [i for i in np.argsort(-area)[:count] if area[i] > 0]
    columns = ["image", "mask", *maps]
    figure, axes = plt.subplots(
        max(len(order), 1),
        len(columns),
        figsize=(1.6 * len(columns), 1.75 * max(len(order), 1)),
        squeeze=False,
    )
    for row, index in enumerate(order):
        image = display_image(test.images[index].numpy())
        for column, name in enumerate(columns):
            axis = axes[row, column]
            if name == "mask":
                axis.imshow(test.masks[index], cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            if name not in ("image", "mask"):
                axis.imshow(maps[name][index], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
                axis.contour(test.masks[index], levels=[0.5], colors="white", linewidths=0.6)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name.replace("mkd_", "MKD ").replace("_", " "), fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    atomic.write_bytes(path, buffer.getvalue())
