"""What the review app draws: slices in the study's own units, window/level presets, heat-map overlays,
the outline of the flagged region, and where the patient is on a slice (edge letters, position in mm,
`kdmed.orientation`). Pure NumPy/SciPy; the app only renders the arrays returned here. Heat maps are scaled
by the one rule (`kdmed.rules.heat_scale`, through `StudyResult.heat_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kdmed.data.transforms import crop_padded, foreground_mask, resize_map, take_slice
from kdmed.orientation import EdgeLetters, edge_letters, slice_position

CT_PRESETS = {"brain (CT, W80 L40)": (40.0, 80.0), "CT soft tissue (W400 L40)": (40.0, 400.0)}


@dataclass(frozen=True)
class Window:
    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2


def display_slice(study, result, i: int) -> np.ndarray:
    """The study's own pixels at position `i` of `result`, aligned with `result.maps[i]`: a volume slice
    cut with the crop box the model's views were cut with (the view `kdmed.data.arrays.to_view` makes; which
    patient side each edge shows: `view_orientation`), a 2D image whole. Values keep the study's units (HU
    for CT). Cut on demand: only the slices shown are ever cut."""
    if result.geometry is None:
        return np.asarray(study.array, dtype=np.float32)
    volume = np.asarray(study.array, dtype=np.float32)[None]
    geometry = result.geometry
    return crop_padded(take_slice(volume, geometry.axis, int(result.slice_indices[i])), geometry.crop_box)[0]


def view_steps(axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The voxel-index steps of one pixel to the right and one pixel down in the view `display_slice` shows
    of slices along `axis`, read off the view transform itself (`take_slice` on a probe of voxel indices),
    so that they cannot drift from what is drawn. The crop box shifts the view, never turns it."""
    probe = np.indices((2, 2, 2)).astype(np.float32)  # channel c holds each voxel's index along axis c
    view = take_slice(probe, axis, 0)
    return view[:, 0, 1] - view[:, 0, 0], view[:, 1, 0] - view[:, 0, 0]


def view_orientation(study, result) -> EdgeLetters | None:
    """The patient directions at the edges of the slices `display_slice` shows; None for a 2D image, which
    has no patient geometry."""
    if result.geometry is None or not study.is_volume:
        return None
    right, down = view_steps(result.geometry.axis)
    return edge_letters(study.affine, right, down)


def slice_mm(study, result, i: int) -> str | None:
    """Where slice `i` of a volume lies along the slice axis, e.g. "z = 12.5 mm"; None for a 2D image."""
    if result.geometry is None or not study.is_volume:
        return None
    axis = result.geometry.axis
    name, mm = slice_position(study.affine, axis, int(result.slice_indices[i]), study.array.shape)
    return f"{name} = {mm:.1f} mm"


def slice_overlay(study, result, i: int, window: Window, opacity: float = 0.5) -> np.ndarray:
    """RGB uint8: slice `i` in `window` with its study-scaled heat map (the finding thumbnails, the PDF)."""
    pixels = display_slice(study, result, i)
    return overlay(apply_window(pixels, window), display_map(result, i, pixels.shape[:2]), opacity)


def display_map(result, i: int, shape: tuple[int, int]) -> np.ndarray:
    """`result.maps[i]` divided by the study's one heat scale (`kdmed.rules.heat_scale`), at `shape`
    (2D images are shown at full resolution)."""
    return fit_map(result.maps[i] / result.heat_scale, shape)


def fit_map(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map at the displayed slice's height and width."""
    return heat if heat.shape == tuple(shape) else resize_map(heat, tuple(shape))


def window_presets(study, foreground: np.ndarray | None = None) -> dict[str, Window]:
    """Named windows for this study: auto (1st-99th percentile of the foreground), brain (CT: W80 L40;
    otherwise the 0.5-99.5 percentile range the model's preprocessing uses), CT soft tissue (CT only), and
    the window stored in the DICOM file when there is one. `foreground`: the volume's mask as scoring
    computed it (`StudyResult.foreground`), so it is not computed twice."""
    values = np.asarray(study.array, dtype=np.float32)
    grey = values.mean(axis=-1) if values.ndim == 3 and not study.is_volume else values
    if grey.ndim == 3:
        mask = (
            foreground if foreground is not None and foreground.shape == grey.shape else foreground_mask(grey)
        )
        foreground = grey[mask]
    else:
        foreground = grey.ravel()
    if foreground.size == 0:
        foreground = grey.ravel()
    presets = {"auto": _percentile_window(foreground, 1.0, 99.0)}
    is_ct = (study.metadata.modality or "").upper() == "CT"
    if is_ct:
        presets.update({name: Window(*cw) for name, cw in CT_PRESETS.items()})
    else:
        presets["brain (MR, 0.5-99.5 %)"] = _percentile_window(foreground, 0.5, 99.5)
    m = study.metadata
    if m.window_center is not None and m.window_width:
        presets["as stored in the file"] = Window(float(m.window_center), float(m.window_width))
    return presets


def _percentile_window(values: np.ndarray, low: float, high: float) -> Window:
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if hi <= lo:
        hi = lo + 1.0
    return Window(center=(lo + hi) / 2, width=hi - lo)


def apply_window(image: np.ndarray, window: Window) -> np.ndarray:
    """Study-unit pixels -> [0, 1] display values: linear inside the window, clipped outside."""
    return np.clip((np.asarray(image, dtype=np.float32) - window.low) / max(window.width, 1e-6), 0.0, 1.0)


def to_rgb(display01: np.ndarray) -> np.ndarray:
    return np.repeat(display01[..., None], 3, axis=-1) if display01.ndim == 2 else display01


def overlay(display01: np.ndarray, heat01: np.ndarray, opacity: float) -> np.ndarray:
    """RGB uint8: the windowed slice blended with a red-to-yellow heat map, more opaque where hotter."""
    rgb = to_rgb(display01)
    level = np.clip(heat01, 0.0, 1.0)[..., None]
    colour = np.concatenate([np.ones_like(level), level, np.zeros_like(level)], axis=-1)
    alpha = float(np.clip(opacity, 0.0, 1.0)) * level
    return (np.clip((1 - alpha) * rgb + alpha * colour, 0, 1) * 255).astype(np.uint8)


def heat_image(heat01: np.ndarray) -> np.ndarray:
    """RGB uint8 heat map alone (for the side-by-side view)."""
    level = np.clip(heat01, 0.0, 1.0)
    return (np.stack([level, level**2, np.zeros_like(level)], axis=-1) * 255).astype(np.uint8)


def outline(heat01: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Boolean mask of the border pixels of the region where the heat map reaches `level`."""
    region = np.asarray(heat01) >= level
    return region & ~ndimage.binary_erosion(region, structure=np.ones((3, 3), bool))


def draw_outline(rgb: np.ndarray, border: np.ndarray, colour=(0, 255, 0)) -> np.ndarray:
    out = rgb.copy()
    out[border] = colour
    return out
