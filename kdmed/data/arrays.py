"""Array functions shared by preprocessing, serving and display: foreground, intensity normalisation,
square crops, the radiological view, resizing (images, masks and maps on one pixel-centre convention) and
the uint8 / model-input conversions. The MONAI dictionary wrappers around them are in
`kdmed.data.transforms`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kdmed.errors import StudyReadError
from kdmed.metrics.pixel import resize_mask_nearest


def foreground_mask(volume: np.ndarray) -> np.ndarray:
    """Voxels that differ from the background value (the median of the volume's border voxels)."""
    border = np.concatenate(
        [volume[0].ravel(), volume[-1].ravel(), volume[:, 0].ravel(), volume[:, -1].ravel()]
    )
    background = float(np.median(border))
    scale = float(np.std(volume)) or 1.0
    return np.abs(volume - background) > 1e-3 * scale


def normalize_percentiles(
    image: np.ndarray, foreground: np.ndarray, lower: float, upper: float
) -> np.ndarray:
    """Scale to [0, 1] by percentiles taken inside the foreground only, so that a large empty background
    does not squash the tissue contrast; background is set to 0."""
    values = image[foreground]
    if values.size == 0:
        raise StudyReadError(
            "the study has no foreground voxels (an empty or constant image); nothing to score."
        )
    lo, hi = np.percentile(values, [lower, upper])
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    out[~foreground] = 0.0
    return out


def square_box(foreground_2d: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """A square (row0, row1, col0, col1) box around the foreground, with margin, clipped by padding later."""
    rows = np.flatnonzero(foreground_2d.any(axis=1))
    cols = np.flatnonzero(foreground_2d.any(axis=0))
    if rows.size == 0:
        return 0, foreground_2d.shape[0], 0, foreground_2d.shape[1]
    r0, r1 = rows[0] - margin, rows[-1] + 1 + margin
    c0, c1 = cols[0] - margin, cols[-1] + 1 + margin
    side = max(r1 - r0, c1 - c0)
    rc, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    r0, c0 = int(round(rc - side / 2.0)), int(round(cc - side / 2.0))
    return r0, r0 + side, c0, c0 + side


def crop_padded(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop the last two axes to `box`, padding with zeros where the box leaves the image."""
    r0, r1, c0, c1 = box
    h, w = image.shape[-2:]
    out = np.zeros(image.shape[:-2] + (r1 - r0, c1 - c0), dtype=image.dtype)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    out[..., sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = image[..., sr0:sr1, sc0:sc1]
    return out


def to_view(slice_xy: np.ndarray) -> np.ndarray:
    """RAS axial slice (x, y) -> radiological view (rows anterior->posterior, columns right->left)."""
    return np.ascontiguousarray(slice_xy.T[::-1, :])


def from_view(view: np.ndarray) -> np.ndarray:
    """Inverse of `to_view`: a view-ordered map back to the slice's (x, y) grid."""
    return np.ascontiguousarray(view[::-1, :].T)


def take_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D view of slice `index` along `axis` of a (C, X, Y, Z) array -> (C, rows, cols)."""
    plane = np.take(volume, index, axis=axis + 1)
    return np.stack([to_view(c) for c in plane])


def center_crop(array: np.ndarray, fraction: float) -> np.ndarray:
    """The central `fraction` of the last two axes (rounded to whole pixels, centred to the floor);
    fraction 1 returns `array` unchanged."""
    if fraction >= 1.0:
        return array
    height, width = array.shape[-2:]
    keep_h, keep_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - keep_h) // 2, (width - keep_w) // 2
    return array[..., top : top + keep_h, left : left + keep_w]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) -> (C, size, size); area-averaging when shrinking, bilinear otherwise. Both put pixel
    centres at half-integers (pixel i covers [i, i + 1) of its grid), the geometry `resize_mask` keeps."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    if tensor.shape[-1] > size and tensor.shape[-2] > size:
        out = F.interpolate(tensor, size=(size, size), mode="area")
    else:
        out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return out[0].numpy()


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) mask -> (size, size) bool by nearest neighbour with the images' half-pixel centres
    (`kdmed.metrics.resize_mask_nearest`), so a resized mask stays on its resized image. (torch's legacy
    "nearest" samples pixel floor(i * in / out), shifting a shrunk mask up to half an input pixel.)"""
    return resize_mask_nearest(np.asarray(mask) > 0, size)


def resize_map(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float map -> `shape` with bilinear interpolation (maps are continuous, masks are not)."""
    tensor = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """A 2D image's values to [0, 1]: 8-bit by 255, wider types by their own min/max."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    if not np.isfinite(image).all():
        raise StudyReadError("the image holds NaN or infinite values; re-export it.")
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0.0 and hi <= 1.0:
        return image
    if lo >= 0.0 and hi <= 255.0 and np.all(image == np.round(image)):
        return image / 255.0
    return (image - lo) / ((hi - lo) or 1.0)


def normalize_robust(image: np.ndarray, foreground: np.ndarray, iqr_multiple: float) -> np.ndarray:
    """The foreground's median to 0.5 and `iqr_multiple` x its interquartile range to a full unit,
    clipped to [0, 1]; background 0. The median and quartiles are those of the (mostly healthy) tissue,
    so a large bright lesion does not rescale the rest as an upper percentile would."""
    values = image[foreground]
    if values.size == 0:
        raise StudyReadError(
            "the study has no foreground voxels (an empty or constant image); nothing to score."
        )
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    spread = iqr_multiple * float(q3 - q1) or 1.0
    out = np.clip(0.5 + (image - median) / spread, 0.0, 1.0).astype(np.float32)
    out[~foreground] = 0.0
    return out


def collapse_grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W): grey images stored as RGB (three identical channels) -> one channel."""
    if image.shape[0] == 3 and np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2]):
        return image[:1]
    return image


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(C, H, W) -> (`channels`, H, W) as the model was trained: grey repeated to RGB, RGB stored grey
    collapsed, true colour averaged to grey for a grey model."""
    image = collapse_grey(image) if channels == 1 else image
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return np.repeat(image, channels, axis=0)
    return image.mean(axis=0, keepdims=True)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8, the quantisation every stored and served model input goes through."""
    return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 or float (B, C, H, W) batch -> float32 (B, 3, H, W) in [0, 1]; grey repeated to 3 channels."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()
