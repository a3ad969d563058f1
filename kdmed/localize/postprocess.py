"""From raw attributions to the map a reader sees (Salehi et al., CVPR 2021, Sec. 3.3), and the scale.

The paper's post-processing: absolute value summed over channels (done by the attribution), Gaussian
blur with sigma 4, then a morphological opening with a 3x3 ellipse, which removes isolated one-pixel
gradient spikes that the blur alone leaves.

Normalisation is per study, never per slice: every slice of a study is divided by the largest value of
the study's maps, so the lesion slices keep their strength relative to the clean slices of the same study.
Per-slice normalisation would stretch every clean slice's faint noise to full brightness. The same
happens to a whole normal study divided by its own peak, so the divisor has a floor: the level that
normal slices reach (`normal_peak`, from held-out normal slices; measured in the `localize` stage).
"""

from __future__ import annotations

import numpy as np
import torch

from kdmed.models.maps import gaussian_blur, grey_opening_cross


def smooth_attributions(raw: torch.Tensor, sigma: float, opening: bool = True) -> torch.Tensor:
    """(N, H, W) raw |attribution| -> blurred (sigma 0 disables) and, optionally, opened maps."""
    maps = gaussian_blur(raw.float(), sigma)
    return grey_opening_cross(maps) if opening else maps


def normal_peak(normal_maps: np.ndarray, quantile: float = 0.95) -> float:
    """The `quantile` of the per-slice maxima of maps of normal slices: the brightness a normal slice
    reaches (0 when there are none)."""
    maps = np.asarray(normal_maps, dtype=np.float64)
    if maps.size == 0:
        return 0.0
    return float(np.quantile(maps.reshape(len(maps), -1).max(axis=1), quantile))


def study_scale(maps, floor: float = 0.0) -> float:
    """The divisor for one study's maps (any iterable of arrays): the largest finite value over all its
    slices, but at least `floor`; 0 when the study has no positive finite value."""
    finite = [m[np.isfinite(m)] for m in (np.asarray(x) for x in maps)]
    peak = max((float(v.max()) for v in finite if v.size), default=0.0)
    return max(peak, floor) if peak > 0 else 0.0


def normalize_per_study(maps: np.ndarray, studies: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """(N, H, W) maps divided by max(the maximum over each study's slices, `floor`); a study whose maps
    are all zero or not finite stays zero. `studies` (N,) holds a study (patient) id per slice."""
    maps = np.asarray(maps, dtype=np.float32)
    studies = np.asarray(studies)
    if studies.shape != (maps.shape[0],):
        raise ValueError(f"studies must have one id per map: shape {studies.shape}, maps {maps.shape}.")
    out = np.zeros_like(maps)
    for study in np.unique(studies):
        rows = studies == study
        peak = study_scale(maps[rows], floor)
        if peak > 0:
            out[rows] = np.nan_to_num(maps[rows] / peak, nan=0.0, posinf=1.0, neginf=0.0)
    return out
