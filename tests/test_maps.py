"""Map post-processing equals the reference operations (SciPy's gaussian_filter, OpenCV's 3x3 opening)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from kdmed.models.maps import gaussian_blur, gaussian_kernel1d, grey_opening_cross


@pytest.mark.parametrize("shape", [(2, 40, 27), (1, 8, 8), (1, 64, 64)])
def test_gaussian_blur_equals_scipy_including_borders(shape):
    maps = np.random.default_rng(0).random(shape).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(maps), 4.0).numpy()
    scipy = np.stack([ndi.gaussian_filter(m, sigma=4) for m in maps])
    assert np.allclose(ours, scipy, atol=1e-6)


def test_kernel_is_truncated_at_four_sigma():
    assert gaussian_kernel1d(4.0).numel() == 33


def test_opening_with_the_3x3_ellipse_removes_single_pixel_peaks():
    maps = np.random.default_rng(1).random((2, 20, 30)).astype(np.float32)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    expected = np.stack([ndi.grey_opening(m, footprint=cross, mode="nearest") for m in maps])
    assert np.array_equal(grey_opening_cross(torch.from_numpy(maps)).numpy(), expected)
    spike = torch.zeros(1, 9, 9)
    spike[0, 4, 4] = 1.0
    assert grey_opening_cross(spike).max() == 0
