"""PNG / JPEG / BMP / TIFF -> a 2D study: `(H, W)` grey or `(H, W, 3)` RGB, values as stored.

16-bit and float images keep their values (no rescaling to 8 bit). Rows and columns stay in stored order:
an EXIF orientation tag is reported, not applied, so pixels line up with masks drawn on the raw file.
Alpha channels are dropped; palette and CMYK/YCbCr images are converted to RGB. Multi-page TIFFs expose
their pages as `n_volumes`, chosen with `volume_index`.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
from PIL import Image

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io.build import image_study
from kdmed.io.guard import reading
from kdmed.io.limits import ReadLimits, check_voxels
from kdmed.io.sources import Item
from kdmed.io.study import SeriesInfo, Study, StudyMetadata

_GREY_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_GREY_ALPHA_MODES = {"LA", "La"}
_RGB_MODES = {"RGB", "RGBA", "RGBa", "RGBX"}
_CONVERTED_MODES = {"P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_EXIF_ORIENTATION = 0x0112
_HINT = "the file may be truncated or corrupt; save it again as PNG or TIFF"


def load_image(item: Item, volume_index: int, limits: ReadLimits) -> Study:
    with _opened(item, limits) as (im, n_frames):
        if not 0 <= volume_index < n_frames:
            raise StudyReadError(
                f"{item.name}: volume_index {volume_index} is out of range; the image has {n_frames} page(s)"
            )
        info = _info(im, n_frames)  # page 0, as `image_info` describes it
        if volume_index:
            im.seek(volume_index)
        im.load()
        mode = im.mode
        array = _to_array(item.name, im)
        notes = _notes(im, mode)
    if array.size == 0:
        raise StudyReadError(f"{item.name}: the image has no pixels (shape {array.shape}); save it again")
    meta = StudyMetadata(
        source_kind="image",
        n_volumes=n_frames,
        volume_index=volume_index,
        photometric="RGB" if array.ndim == 3 else "MONOCHROME2",
        warnings=tuple(notes),
    )
    return replace(image_study(item.name, array, (1.0, 1.0), meta), series=(info,))


def image_info(item: Item, limits: ReadLimits) -> SeriesInfo:
    """The image described as one series, from its header alone (no pixels are decoded)."""
    with _opened(item, limits) as (im, n_frames):
        return _info(im, n_frames)


@contextlib.contextmanager
def _opened(item: Item, limits: ReadLimits) -> Iterator[tuple[Image.Image, int]]:
    """The open image (header read and checked, pixels not decoded) and its number of pages; any failure
    inside, the caller's included, names the file."""
    with reading(item.name, f"not a readable {item.kind.value} image", _HINT), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # always from memory: Pillow reads a chunk's declared length in one call (PNG's load_end), and a
        # file object would allocate a damaged 4 GiB length up front; BytesIO returns what is there
        source = io.BytesIO(item.read())
        with _open(item.name, source, limits) as im:
            width, height = im.size
            check_voxels(item.name, (height, width, len(im.getbands())), limits)
            if width == 0 or height == 0:
                raise StudyReadError(
                    f"{item.name}: the image has no pixels (size {width}x{height}); save it again"
                )
            _check_mode(item.name, im.mode)
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            yield im, n_frames


@contextlib.contextmanager
def _open(name: str, source, limits: ReadLimits) -> Iterator[Image.Image]:
    """Image.open, with Pillow's own pixel-count guard (raised before any pixel is read) worded like ours."""
    try:
        im = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise StudyReadError(
            f"{name}: the header declares more pixels than Pillow will open ({exc}); kdmed's limit is "
            f"{limits.max_voxels:,} voxels (ReadLimits.max_voxels). The file is damaged or not a scan"
        ) from exc
    with im:
        yield im


def _info(im: Image.Image, n_frames: int) -> SeriesInfo:
    width, height = im.size
    return SeriesInfo(
        uid=None,
        number=None,
        description=None,
        modality=None,
        n_files=1,
        n_slices=1,
        n_volumes=n_frames,
        orientation=None,
        is_localizer=False,
        rows=int(height),
        columns=int(width),
    )


def _to_array(name: str, im: Image.Image) -> np.ndarray:
    mode = im.mode
    _check_mode(name, mode)
    if mode in _GREY_MODES:  # bilevel '1' gives 0/1, 16-bit modes keep their full range
        return np.asarray(im).astype(np.float32)
    if mode in _GREY_ALPHA_MODES:
        return np.asarray(im.getchannel("L"), dtype=np.float32)
    if mode in _RGB_MODES:
        return np.asarray(im, dtype=np.float32)[..., :3]
    return np.asarray(im.convert("RGB"), dtype=np.float32)


def _check_mode(name: str, mode: str) -> None:
    if mode not in _GREY_MODES | _GREY_ALPHA_MODES | _RGB_MODES | _CONVERTED_MODES:
        raise UnsupportedStudyError(
            f"{name}: pixel mode {mode!r} is not supported; save the image as 8/16-bit grey or 8-bit RGB"
        )


def _notes(im: Image.Image, mode: str) -> list[str]:
    notes: list[str] = []
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        notes.append("the alpha (transparency) channel was dropped")
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not block reading the pixels
        orientation = 1
    if orientation not in (0, 1):
        notes.append(
            f"EXIF orientation {orientation} was not applied: the array keeps the stored row/column order"
        )
    return notes
