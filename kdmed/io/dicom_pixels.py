"""Read a DICOM file with pydicom and decode its pixel data, with errors that say what to install.

Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls,
python-gdcm). When none is installed for a syntax, or all fail, an `UnsupportedStudyError` names the
syntax and the package that would decode it. Modality rescale and MONOCHROME1 inversion are applied per
frame by the volume builder, because enhanced multi-frame files carry per-frame slopes.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
import pydicom.filereader
from pydicom import uid as uids
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, get_decoder

from kdmed.errors import KdmedError, StudyReadError, UnsupportedStudyError
from kdmed.io.decoder_process import decode_isolated
from kdmed.io.guard import PASS_THROUGH, reading
from kdmed.io.header_checks import dicom_pixel_data, dicom_pixel_module
from kdmed.io.limits import ReadLimits, human_bytes
from kdmed.io.sniff import Kind
from kdmed.io.sources import Item

_GDCM = "python-gdcm"
_J2K = "pylibjpeg-openjpeg (or python-gdcm)"
_DECODER_PACKAGES = {
    uids.JPEGBaseline8Bit: _GDCM,
    uids.JPEGExtended12Bit: _GDCM,
    uids.JPEGLossless: _GDCM,
    uids.JPEGLosslessSV1: _GDCM,
    uids.JPEGLSLossless: "pyjpegls (or python-gdcm)",
    uids.JPEGLSNearLossless: "pyjpegls (or python-gdcm)",
    uids.JPEG2000Lossless: _J2K,
    uids.JPEG2000: _J2K,
    uids.HTJ2KLossless: "pylibjpeg-openjpeg>=2.2",
    uids.HTJ2KLosslessRPCL: "pylibjpeg-openjpeg>=2.2",
    uids.HTJ2K: "pylibjpeg-openjpeg>=2.2",
    uids.RLELossless: "pylibjpeg-rle",
}
_HINT = "the file may be truncated or corrupt; export it again from the scanner or PACS"


_DEFLATED = str(uids.DeflatedExplicitVRLittleEndian).encode("ascii")


def check_deflated_size(item: Item, limits: ReadLimits) -> None:
    """A Deflated Explicit VR Little Endian file is inflated whole by pydicom: measure what it inflates to
    first, streaming and discarding, and refuse it above `limits.max_file_bytes` (a deflate bomb)."""
    if _DEFLATED not in item.head(4096):
        return
    with reading(item.name, "the deflated data set cannot be inflated", _HINT):
        stream = io.BytesIO(item.read())
        pydicom.filereader.read_preamble(stream, item.kind is Kind.DICOM_RAW)
        meta = pydicom.filereader._read_file_meta_info(stream)
        if str(meta.get("TransferSyntaxUID", "")) != uids.DeflatedExplicitVRLittleEndian:
            return
        inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := stream.read(1 << 20):
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 24))
                chunk = inflater.unconsumed_tail
                if total > limits.max_file_bytes:
                    raise StudyReadError(
                        f"{item.name}: the deflated data set inflates to more than {human_bytes(limits.max_file_bytes)} "
                        "(ReadLimits.max_file_bytes); it may be a decompression bomb, or pass a larger limit if "
                        "the file is trusted"
                    )


def read_dataset(item: Item, *, pixels: bool) -> Dataset:
    """dcmread with kdmed's errors. Data sets without File Meta header are read with force=True only when
    sniffing found a plausible first element, so arbitrary files never parse into garbage."""
    with (
        reading(item.name, "not a readable DICOM file", _HINT),
        warnings.catch_warnings(),
        _source(item) as source,
    ):
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(source, force=item.kind is Kind.DICOM_RAW, stop_before_pixels=not pixels)
        # pydicom converts raw elements when first accessed: convert them all here, inside the guard, so
        # an unknown VR or a bad value length fails now with this file's name, not later in any reader
        for _ in ds.iterall():
            pass
        for _ in getattr(ds, "file_meta", None) or ():  # the File Meta group is a data set of its own
            pass
        return ds


class _ClampedFile:
    """A file whose reads never ask for more than what is left: pydicom calls read(length) with the
    element length from the file, and a damaged length of 4 GiB must not allocate 4 GiB before EOF."""

    def __init__(self, path: str):
        self._file = open(path, "rb")  # noqa: SIM115 - closed by _source
        self._size = os.fstat(self._file.fileno()).st_size
        self.name = path

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self._file.read()
        return self._file.read(min(n, max(0, self._size - self._file.tell())))

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._file, attribute)


@contextlib.contextmanager
def _source(item: Item) -> Iterator[Any]:
    """What dcmread reads: the in-memory bytes (BytesIO never over-allocates) or the clamped file."""
    if item.data is not None:
        yield io.BytesIO(item.data)
        return
    clamped = _ClampedFile(str(item.path))
    try:
        yield clamped
    finally:
        clamped.close()


def transfer_syntax(ds: Dataset, name: str) -> uids.UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:
        # no File Meta header: pydicom inferred the encoding while reading
        implicit, little = ds.original_encoding
        if not little:
            return uids.ExplicitVRBigEndian
        return uids.ImplicitVRLittleEndian if implicit else uids.ExplicitVRLittleEndian
    syntax = uids.UID(str(ts).strip("\x00 "))
    if not syntax.is_valid or not syntax.is_transfer_syntax:
        raise UnsupportedStudyError(
            f"{name}: TransferSyntaxUID = {str(ts)!r} is not a DICOM transfer syntax, so the pixel data cannot be "
            "interpreted; the File Meta header is damaged: export the file again"
        )
    return syntax


def check_decodable(name: str, ts: uids.UID) -> None:
    """Fail early, before reading pixels, when no installed plugin can decode this transfer syntax."""
    if not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedStudyError(
            f"{name}: transfer syntax {ts.name} ({ts}) cannot be decoded by pydicom; convert the file to an "
            "uncompressed syntax (e.g. `gdcmconv --raw in.dcm out.dcm`)"
        ) from exc
    if not decoder.is_available:
        package = _DECODER_PACKAGES.get(ts, _GDCM)
        raise UnsupportedStudyError(
            f"{name}: pixel data is compressed as {ts.name} ({ts}) and no installed decoder handles it; "
            f"install {package}, or convert the file to an uncompressed syntax"
        )


def decode_pixels(item: Item, ds: Dataset, limits: ReadLimits) -> np.ndarray:
    """All frames as `(frames, rows, cols)` or `(frames, rows, cols, 3)`, stored values (not rescaled).

    YBR colour is converted to RGB and PALETTE COLOR through its lookup table. The decoded size is checked
    against `limits.max_voxels` first, so a small compressed file cannot inflate past it.
    """
    ts = transfer_syntax(ds, item.name)
    check_decodable(item.name, ts)
    if not ds.get("Rows") or not ds.get("Columns"):
        raise StudyReadError(
            f"{item.name}: Rows or Columns is missing when the whole file is read (the header alone had them): "
            "the file is truncated or damaged; export it again"
        )
    dicom_pixel_module(item.name, ds, limits)  # again: the full read may differ from the header-only one
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = ts  # pydicom's decoders need it spelled out
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise StudyReadError(
            f"{item.name}: the header describes an image but the file holds no pixel data: it is truncated "
            "or was stripped; export it again"
        )
    dicom_pixel_data(item.name, ds, ts.is_compressed)
    try:
        if ts.is_compressed and limits.isolate_decoders:
            array = decode_isolated(
                item.name, ds, syntax_uid=str(ts), syntax_name=ts.name,
                seconds=limits.decode_seconds, memory_bytes=limits.decoder_memory_bytes,
            )  # fmt: skip
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = ds.pixel_array
    except KdmedError:
        raise
    except (RuntimeError, NotImplementedError) as exc:
        detail = " ".join(str(exc).split())[:300]
        if ts in (uids.JPEGBaseline8Bit, uids.JPEGExtended12Bit) and "12-bit" in detail:
            way_out = "only pylibjpeg-libjpeg decodes 12-bit JPEG (GPL-3, so kdmed does not ship it)"
        else:
            way_out = f"decoders for this syntax: {_DECODER_PACKAGES.get(ts, _GDCM)}"
        raise UnsupportedStudyError(
            f"{item.name}: the installed plugins could not decode {ts.name} ({ts}) pixel data ({detail}); "
            f"{way_out}; or convert the file to an uncompressed transfer syntax (e.g. dcmdjpeg, gdcmconv "
            "--raw)"
        ) from exc
    except PASS_THROUGH:
        raise
    except BaseException as exc:  # noqa: BLE001 - a decoder's panic is a BaseException
        detail = " ".join(str(exc).split())[:200]
        raise StudyReadError(
            f"{item.name}: the pixel data cannot be read ({type(exc).__name__}: {detail}); {_HINT}"
        ) from exc
    return _frames_first(item.name, ds, array)


def _frames_first(name: str, ds: Dataset, array: np.ndarray) -> np.ndarray:
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    with reading(name, "the colour palette cannot be applied", _HINT):
        if photometric == "PALETTE COLOR":
            array = apply_color_lut(array, ds)
            spp = 3
    expected_ndim = 2 + (n_frames > 1) + (spp > 1)
    if array.ndim != expected_ndim:
        raise StudyReadError(
            f"{name}: decoded pixel data has shape {array.shape}, inconsistent with its header"
        )
    if n_frames == 1:
        array = array[np.newaxis]
    if spp not in (1, 3):
        raise UnsupportedStudyError(f"{name}: {spp} samples per pixel is not supported (only grey or RGB)")
    return array


def stored_range(ds: Dataset) -> tuple[float, float]:
    """Smallest and largest storable value (BitsStored, PixelRepresentation), for MONOCHROME1 inversion."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0):
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def first_number(value: Any) -> float | None:
    """First value of a possibly multi-valued numeric element, or None when absent or not a number."""
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        if not len(value):
            return None
        value = value[0]
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None
