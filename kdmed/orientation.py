"""Where the patient is on a displayed slice: the anatomical letters at the edges of the view, and the slice's
position in millimetres, from a volume's affine (voxel indices -> RAS mm, `kdmed.io.study`).

A displayed slice is described by two voxel-index steps: the one a pixel to the right on screen and the
one a pixel down (`kdmed.display.view_steps` reads them off the view transform the app actually uses). The
affine turns each step into a patient direction; an edge is labelled with the direction that points towards
it: R/L (+x/-x), A/P (+y/-y), S/I (+z/-z), two letters for an oblique direction (e.g. "RA"), the stronger
first, as DICOM viewers do. Pure NumPy and Pillow, no knowledge of the app.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["EdgeLetters", "direction_letters", "draw_edge_letters", "edge_letters", "slice_position"]

POSITIVE, NEGATIVE = "RAS", "LPI"  # the patient directions of +x, +y, +z and of -x, -y, -z (RAS+ mm)
WORLD_AXES = "xyz"
OBLIQUE_SHARE = 0.3  # a second letter when that axis carries at least this share of the direction
MIN_DRAWN_SIDE = 480  # drawn letters need pixels: smaller slices are enlarged (whole pixels) first


@dataclass(frozen=True)
class EdgeLetters:
    """The patient direction at each edge of a displayed slice."""

    left: str
    right: str
    top: str
    bottom: str

    def describe(self) -> str:
        return f"left {self.left} · right {self.right} · top {self.top} · bottom {self.bottom}"


def direction_letters(vector) -> str:
    """The patient direction of a RAS mm vector: "R", "P", ... or two letters when it is oblique."""
    v = np.asarray(vector, dtype=np.float64)
    if v.shape != (3,) or not np.any(v):
        raise ValueError(f"a direction is a non-zero 3-vector in RAS mm, got {v.tolist()}")
    share = np.abs(v) / np.abs(v).sum()
    order = [a for a in np.argsort(-share, kind="stable") if share[a] >= OBLIQUE_SHARE][:2]
    return "".join(POSITIVE[a] if v[a] > 0 else NEGATIVE[a] for a in order)


def edge_letters(affine, right_step, down_step) -> EdgeLetters:
    """The letters at the edges of a view whose pixels step by `right_step` (to the right) and `down_step`
    (down) in voxel indices, for a volume whose `affine` (4 x 4) maps voxel indices to RAS mm."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    right = linear @ np.asarray(right_step, dtype=np.float64)
    down = linear @ np.asarray(down_step, dtype=np.float64)
    return EdgeLetters(
        left=direction_letters(-right),
        right=direction_letters(right),
        top=direction_letters(-down),
        bottom=direction_letters(down),
    )


def slice_position(affine, axis: int, index: int, shape) -> tuple[str, float]:
    """The world axis ("x", "y" or "z") closest to the slice normal and the slice's coordinate on it, in mm,
    taken at the centre of slice `index` along voxel `axis` of a volume of `shape` (X, Y, Z)."""
    affine = np.asarray(affine, dtype=np.float64)
    if not 0 <= axis < 3 or not 0 <= index < shape[axis]:
        raise ValueError(f"slice {index} along axis {axis} is outside a volume of shape {tuple(shape)}")
    centre = (np.asarray(shape[:3], dtype=np.float64) - 1) / 2
    centre[axis] = index
    world = affine[:3, :3] @ centre + affine[:3, 3]
    along = int(np.argmax(np.abs(affine[:3, axis])))
    return WORLD_AXES[along], float(world[along])


def draw_edge_letters(rgb: np.ndarray, letters: EdgeLetters, min_side: int = MIN_DRAWN_SIDE) -> np.ndarray:
    """`rgb` (H, W, 3) uint8 with the letters drawn at the middle of each edge, white with a dark outline.
    A slice smaller than `min_side` is first enlarged by a whole factor (nearest pixel: no new values), so
    the letters stay legible at any slice size; the result is that enlarged image."""
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    factor = max(1, -(-min_side // max(min(image.size), 1)))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    size = max(12, min(image.size) // 16)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    margin, stroke = size // 3, max(1, size // 10)
    width, height = image.size
    for text, where in (
        (letters.left, "left"),
        (letters.right, "right"),
        (letters.top, "top"),
        (letters.bottom, "bottom"),
    ):
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
        w, h = x1 - x0, y1 - y0
        x = {"left": margin, "right": width - margin - w}.get(where, (width - w) // 2)
        y = {"top": margin, "bottom": height - margin - h}.get(where, (height - h) // 2)
        draw.text((x - x0, y - y0), text, fill="white", font=font, stroke_width=stroke, stroke_fill="black")
    return np.asarray(image)
