"""One small file per kind of hostile input that an outside fuzzing run turned up (issue 14), built from
the fuzzer's own seeds, with the header field each must be refused for.

These are the regression cases: every one must load or fail with a `KdmedError` that names the field,
within seconds, in `load_study`, in `kdmed score` and in the review app. `python -m kdmed.io.hostile_files
DIR` writes them all to DIR, for trying them by hand.
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.filereader
from pydicom import config as dicom_config
from pydicom import uid as uids

from kdmed.io.fuzz_mutate import _png_with_ihdr
from kdmed.io.fuzz_seeds import _classic, _compressed, _image_bytes, _multiframe
from kdmed.io.synthetic import to_bytes


def _edited(data: bytes, **values) -> bytes:
    saved = dicom_config.settings.writing_validation_mode
    dicom_config.settings.writing_validation_mode = dicom_config.IGNORE
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        for keyword, value in values.items():
            if value is None:
                del ds[keyword]
            else:
                setattr(ds, keyword, value)
        return to_bytes(ds)
    finally:
        dicom_config.settings.writing_validation_mode = saved


def frames_bomb() -> bytes:
    return _edited(to_bytes(_multiframe()), NumberOfFrames="2147483647")


def jpegls_wide() -> bytes:
    return _edited(_compressed(_classic(64, 64), uids.JPEGLSLossless) or b"", Columns=32768)


def rle_one_pixel() -> bytes:
    return _edited(_compressed(_classic(64, 64), uids.RLELossless) or b"", Rows=1, Columns=1)


def rle_frames_hang() -> bytes:
    return _edited(_compressed(_classic(64, 64), uids.RLELossless) or b"", NumberOfFrames="100000")


def not_a_transfer_syntax() -> bytes:
    data = to_bytes(_classic())
    old = uids.ExplicitVRLittleEndian.encode("ascii") + b"\x00"  # 20 bytes, padded to even length
    new = b"1.2.3.4.5.6.7.8.9.10"  # the same length: only the value changes
    return data.replace(old, new, 1)


def orientation_huge() -> bytes:
    return _edited(to_bytes(_classic()), ImageOrientationPatient=["1e308"] * 6)


def spacing_tiny() -> bytes:
    return _edited(to_bytes(_classic()), PixelSpacing=["1e-300", "1e-300"])


def missing_bits_allocated() -> bytes:
    return _edited(to_bytes(_classic()), BitsAllocated=None)


def unknown_vr() -> bytes:
    """SOPClassUID's VR bytes replaced by a VR no standard defines: pydicom fails when it is first read."""
    data = to_bytes(_classic())
    tag = struct.pack("<HH", 0x0008, 0x0016) + b"UI"
    return data.replace(tag, tag[:4] + b"\x55\xf8", 1)


def unknown_vr_in_file_meta() -> bytes:
    """The same in the File Meta group (MediaStorageSOPClassUID), which pydicom keeps as a separate data set."""
    data = to_bytes(_classic())
    tag = struct.pack("<HH", 0x0002, 0x0002) + b"UI"
    return data.replace(tag, tag[:4] + b"\x55\x03", 1)


@functools.cache
def deflate_bomb() -> bytes:
    """Deflated Explicit VR Little Endian whose data set inflates to 2.5 GiB of zeros (an 11 MB file)."""
    ds = _classic()
    ds.file_meta.TransferSyntaxUID = uids.DeflatedExplicitVRLittleEndian
    del ds.PixelData
    meta_and_header = to_bytes(ds)  # preamble, File Meta and the deflated data set without pixels
    stream = io.BytesIO(meta_and_header)
    pydicom.filereader.read_preamble(stream, False)
    pydicom.filereader._read_file_meta_info(stream)
    head, deflated = meta_and_header[: stream.tell()], meta_and_header[stream.tell() :]
    body = zlib.decompress(deflated, -zlib.MAX_WBITS)
    size = 5 * 1024**3 // 2
    body += struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", size)
    packer = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [packer.compress(body)]
    zeros = bytes(64 * 1024**2)
    for _ in range(size // len(zeros)):
        parts.append(packer.compress(zeros))
    parts.append(packer.flush())
    return head + b"".join(parts)


def _nifti(edit: Callable[[nib.Nifti1Header], None]) -> bytes:
    volume = np.ones((8, 8, 6), np.float32)
    image = nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0]))
    image.header.set_qform(image.affine, code=1)
    image.header.set_sform(image.affine, code=1)
    raw = bytearray(image.to_bytes())
    header = nib.Nifti1Header(binaryblock=bytes(raw[:348]), check=False)
    edit(header)
    return gzip.compress(header.binaryblock + bytes(raw[348:]), mtime=0)


def _set(field: str, value, index: int | None = None) -> Callable[[nib.Nifti1Header], None]:
    def edit(header: nib.Nifti1Header) -> None:
        if index is None:
            header._structarr[field] = value
        else:
            header._structarr[field][index] = value

    return edit


def png_huge() -> bytes:
    grey = np.zeros((30, 28), np.uint8)
    return _png_with_ihdr(_image_bytes(grey, "PNG"), 65535, 65535, 8, 6) or b""


def png_memory() -> bytes:
    """Within the voxel count for grey, over it in RGBA: the colour samples must be counted."""
    grey = np.zeros((30, 28), np.uint8)
    return _png_with_ihdr(_image_bytes(grey, "PNG"), 8192, 8192, 8, 6) or b""


# name: (file name, builder, text the refusal must contain)
REPRODUCERS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "frames_bomb": ("frames.dcm", frames_bomb, "NumberOfFrames"),
    "jpegls_wide": ("jpegls.dcm", jpegls_wide, "JPEG-LS"),
    "rle_one_pixel": ("rle.dcm", rle_one_pixel, "RLE"),
    "rle_frames_hang": ("rle_frames.dcm", rle_frames_hang, "NumberOfFrames"),
    "not_a_transfer_syntax": ("syntax.dcm", not_a_transfer_syntax, "TransferSyntaxUID"),
    "orientation_1e308": ("orientation.dcm", orientation_huge, "ImageOrientationPatient"),
    "spacing_1e-300": ("spacing.dcm", spacing_tiny, "PixelSpacing"),
    "missing_bits_allocated": ("bits.dcm", missing_bits_allocated, "BitsAllocated"),
    "unknown_vr": ("vr.dcm", unknown_vr, "Value Representation"),
    "unknown_vr_in_file_meta": ("meta_vr.dcm", unknown_vr_in_file_meta, "Value Representation"),
    "nifti_quatern_c_5": ("quatern.nii.gz", lambda: _nifti(_set("quatern_c", 5.0)), "quatern"),
    "nifti_zero_sform": ("sform.nii.gz", lambda: _nifti(_set("srow_x", 0.0, 0)), "srow"),
    "nifti_dim0_1": ("dim0.nii.gz", lambda: _nifti(_set("dim", 1, 0)), "1D data"),
    "nifti_dim0_9": ("dim9.nii.gz", lambda: _nifti(_set("dim", 9, 0)), "dim[0]"),
    "nifti_srow_1e38": ("srow.nii.gz", lambda: _nifti(_set("srow_y", 1e38, 3)), "srow"),
    "deflate_bomb": ("deflated.dcm", deflate_bomb, "inflates to more than"),
    "png_65535_square": ("huge.png", png_huge, "voxels"),
    "png_rgba_8192": ("rgba.png", png_memory, "voxels"),
}


def build(name: str) -> tuple[str, bytes]:
    file_name, builder, _ = REPRODUCERS[name]
    data = builder()
    if not data:
        raise RuntimeError(f"the reproducer {name} needs an encoder that is not installed here")
    return file_name, data


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kdmed.io.hostile_files DIR", file=sys.stderr)
        return 2
    folder = Path(args[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name in REPRODUCERS:
        file_name, data = build(name)
        (folder / f"{name}-{file_name}").write_bytes(data)
    print(f"wrote {len(REPRODUCERS)} files to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
