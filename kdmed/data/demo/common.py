"""Helpers shared by the demo generators: per-case seeding, validation, smooth noise, atomic writes.

Every case draws from its own generator, seeded from (global seed, domain tag, index), so a case's bytes
depend neither on how many other cases are generated nor on their order.
"""

from __future__ import annotations

import gzip
import io
import shutil
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from kdmed.errors import ConfigError

# gzip level for .nii.gz: 6 is gzip's own default; higher levels cost time for about 1 % less disk.
GZIP_LEVEL = 6


def case_rng(seed: int, tag: str, index: int) -> np.random.Generator:
    """An independent generator for one case.

    ``tag`` names the domain and split (e.g. ``"oct/test/Ungood"``); it enters through CRC-32 rather than
    ``hash()``, which Python salts per process and would break reproducibility.
    """
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, zlib.crc32(tag.encode()), index])


def spread_flags(n_normal: int, n_abnormal: int) -> list[bool]:
    """Abnormal flags for ``n_normal + n_abnormal`` cases, abnormal ones spread evenly through the order.

    Interleaving keeps any prefix of the case list (a patient split taken in id order) balanced.
    """
    total = n_normal + n_abnormal
    return [(i + 1) * n_abnormal // total > i * n_abnormal // total for i in range(total)]


def require_int(owner: str, name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise `ConfigError` unless ``value`` is an int (not a bool) in ``[low, high]``."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    valid = not isinstance(value, bool) and isinstance(value, int | np.integer)
    if not valid or value < low or (high is not None and value > high):
        raise ConfigError(f"params: '{owner}.{name}' = {value!r} is not allowed; expected {allowed}.")


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Zero-mean, unit-std random field whose features are about ``scale`` pixels across.

    White noise on a coarse grid (one node per ``scale`` pixels) spread onto the full grid by a separable
    Gaussian kernel, one axis at a time: a few small tensor contractions instead of a full-size blur.
    ``einsum`` (not BLAS) keeps the sums in a fixed order, so the bytes do not depend on thread counts.
    """
    letters = "abcdefgh"[: len(shape)]
    coarse_shape = tuple(int(np.ceil(n / scale)) + 4 for n in shape)
    field = rng.standard_normal(coarse_shape)
    for axis, size in enumerate(shape):
        nodes = (np.arange(coarse_shape[axis]) - 2.0) * scale
        weights = np.exp(-0.5 * ((np.arange(size)[:, None] - nodes[None, :]) / (0.6 * scale)) ** 2)
        out = letters[:axis] + "z" + letters[axis + 1 :]
        field = np.einsum(f"{letters},z{letters[axis]}->{out}", field, weights)
    field = (field - field.mean()).astype(np.float32)
    std = field.std()
    return field / std if std > 0 else field


def reset_dir(path: Path) -> Path:
    """Remove ``path`` (folder, file or link) if present and create it empty."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def encode_image(array: np.ndarray, fmt: str) -> bytes:
    """PNG/BMP bytes of a uint8 (H, W) grey or (H, W, 3) RGB array; Pillow writes no timestamps."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format=fmt)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with a zero timestamp and no file name, so the same data always gives the same bytes."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip a [0, 1] float image and round it to 8 bits."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
