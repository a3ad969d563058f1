"""From raw attributions to the map a reader sees (Salehi et al., CVPR 2021, Sec. 3.3).

The paper's post-processing: absolute value summed over channels (done by the attribution), Gaussian
blur with sigma 4, then a morphological opening with a 3x3 ellipse, which removes isolated one-pixel
gradient spikes that the blur alone leaves.

Scaling follows the one rule of `kdmed.rules` (`heat_scale`, `normalize_per_study`): per study, never
per slice, floored at the level normal slices reach (`normal_peak` of validation normals), so the lesion
slices keep their strength relative to the clean slices of the same study and a normal study stays dark.
"""

from __future__ import annotations

import torch

from kdmed.models.maps import gaussian_blur, grey_opening_cross
from kdmed.rules import heat_scale, normal_peak, normalize_per_study

__all__ = ["heat_scale", "normal_peak", "normalize_per_study", "smooth_attributions"]


def smooth_attributions(raw: torch.Tensor, sigma: float, opening: bool = True) -> torch.Tensor:
    """(N, H, W) raw |attribution| -> blurred (sigma 0 disables) and, optionally, opened maps."""
    maps = gaussian_blur(raw.float(), sigma)
    return grey_opening_cross(maps) if opening else maps
