"""What the review app draws: slices in the study's own units, window/level presets, heat-map overlays
and the outline of the flagged region. Pure NumPy/SciPy; the app only renders the arrays returned here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kdmed.data.transforms import crop_padded, foreground_mask, resize_map, take_slice
from kdmed.localize.postprocess import study_scale

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


def study_slices(study, result) -> list[np.ndarray]:
    """The study's own pixels for every scored position, aligned with `result.maps`: volumes cut with the
    crop box the model's views were cut with (radiological view), 2D images whole. Values keep the study's
    units (HU for CT)."""
    if result.geometry is None:
        return [np.asarray(study.array, dtype=np.float32)]
    volume = np.asarray(study.array, dtype=np.float32)[None]
    axis, box = result.geometry.axis, result.geometry.crop_box
    return [crop_padded(take_slice(volume, axis, int(i)), box)[0] for i in result.slice_indices]


def maps_for_display(result, slices: list[np.ndarray]) -> list[np.ndarray]:
    """Each map at its display slice's height and width (2D images are shown at full resolution)."""
    return [
        m if m.shape == s.shape[:2] else resize_map(m, tuple(s.shape[:2]))
        for m, s in zip(result.maps, slices, strict=True)
    ]


def window_presets(study) -> dict[str, Window]:
    """Named windows for this study: auto (1st-99th percentile of the foreground), brain (CT: W80 L40;
    otherwise the 0.5-99.5 percentile range the model's preprocessing uses), CT soft tissue (CT only), and
    the window stored in the DICOM file when there is one."""
    values = np.asarray(study.array, dtype=np.float32)
    grey = values.mean(axis=-1) if values.ndim == 3 and not study.is_volume else values
    foreground = grey[foreground_mask(grey)] if grey.ndim == 3 else grey.ravel()
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


def heat_scale(maps: list[np.ndarray], floor: float = 0.0) -> float:
    """One scale for the whole study (never per slice, so a clean slice stays dark): its largest map
    value, but at least `floor`, the level normal slices reach (`map_floor`)."""
    return study_scale(maps, floor) or 1.0


def map_floor(checkpoint) -> float:
    """The map level of a normal slice, from the checkpoint: STPM's and RD4AD's score is the maximum of
    their map, so the calibrated threshold is exactly the map peak that normal slices stay under. MKD's
    score is not a map value; its maps get no floor (the study's own peak scales them)."""
    if checkpoint.metadata.get("method") in ("stpm", "rd4ad"):
        return float(checkpoint.threshold)
    return 0.0


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
