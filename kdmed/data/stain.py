"""Colour normalisation of stained microscopy: Reinhard et al., "Color transfer between images", IEEE
Computer Graphics and Applications 21(5), 2001.

Each RGB image is taken to the decorrelated l-alpha-beta space of Ruderman et al. (1998) through LMS cone
responses and their logarithm; there every channel is shifted and scaled to a fixed reference mean and
standard deviation, and the result is taken back to RGB. With one reference for every image, crops from
two labs (another scanner, another stain batch) arrive at the model with the same colour statistics.

The reference (`REINHARD_REFERENCE`) is the mean of the per-image statistics of the 1,200 PBC neutrophils
in `../shared/data/wbc_pbc`, resized to 128 px (computed with `reference_statistics`); it is a constant of the preprocessing
contract, so training and every upload use the same one.
"""

from __future__ import annotations

import numpy as np

# RGB -> LMS and l-alpha-beta <- log LMS (Reinhard et al. 2001, equations 1-3 and 4-6)
_RGB_TO_LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]], dtype=np.float64
)
_LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1, 1, 1], [1, 1, -2], [1, -1, 0]], dtype=np.float64
)
_LMS_TO_RGB = np.linalg.inv(_RGB_TO_LMS)
_LAB_TO_LMS = np.linalg.inv(_LMS_TO_LAB)
# the smallest cone response kept before the logarithm (a black pixel would be log 0)
_FLOOR = 1.0 / 255.0

# (mean l, mean alpha, mean beta), (sd l, sd alpha, sd beta) of the PBC neutrophils (module docstring)
REINHARD_REFERENCE = ((-0.2264, 0.0167, 0.0105), (0.1862, 0.0702, 0.0044))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB in [0, 1] -> (3, H, W) l-alpha-beta (base-10 logarithm, as in the paper)."""
    lms = np.einsum("ij,jhw->ihw", _RGB_TO_LMS, np.asarray(rgb, dtype=np.float64))
    return np.einsum("ij,jhw->ihw", _LMS_TO_LAB, np.log10(np.maximum(lms, _FLOOR)))


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """The inverse of `rgb_to_lab`, clipped to [0, 1]."""
    lms = 10.0 ** np.einsum("ij,jhw->ihw", _LAB_TO_LMS, lab)
    return np.clip(np.einsum("ij,jhw->ihw", _LMS_TO_RGB, lms), 0.0, 1.0)


def lab_statistics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of an image in l-alpha-beta."""
    lab = rgb_to_lab(rgb).reshape(3, -1)
    return lab.mean(axis=1), lab.std(axis=1)


def reinhard(rgb: np.ndarray, reference=REINHARD_REFERENCE) -> np.ndarray:
    """(3, H, W) RGB in [0, 1] with its l-alpha-beta statistics moved to `reference`; float32.

    A channel without spread (a flat image) keeps its values shifted to the reference mean."""
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"Reinhard normalisation needs a (3, H, W) RGB image; got shape {rgb.shape}.")
    target_mean, target_sd = (np.asarray(v, dtype=np.float64)[:, None, None] for v in reference)
    lab = rgb_to_lab(rgb)
    mean = lab.mean(axis=(1, 2), keepdims=True)
    sd = lab.std(axis=(1, 2), keepdims=True)
    gain = np.where(sd > 1e-8, target_sd / np.maximum(sd, 1e-8), 1.0)
    return lab_to_rgb((lab - mean) * gain + target_mean).astype(np.float32)


def reference_statistics(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean of the per-image l-alpha-beta means and standard deviations over `images` ((3, H, W) RGB
    in [0, 1]): how `REINHARD_REFERENCE` was computed."""
    stats = [lab_statistics(image) for image in images]
    means = np.mean([m for m, _ in stats], axis=0)
    sds = np.mean([s for _, s in stats], axis=0)
    return tuple(round(float(v), 4) for v in means), tuple(round(float(v), 4) for v in sds)
