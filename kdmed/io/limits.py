"""Size caps applied while reading a study, so that a hostile or broken upload cannot exhaust memory.

Every cap is checked before the expensive step it protects: file sizes before reading, declared and actual
decompressed sizes while inflating zip members and gzip streams, voxel counts from headers before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import BinaryIO

from kdmed.errors import ConfigError, StudyReadError

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class ReadLimits:
    """Caps for one `load_study` / `list_series` / `inspect_source` call.

    max_file_bytes: one file, zip member or decompressed gzip stream.
    max_voxels: voxels (times colour samples) of the one volume or 2D image returned, checked from headers
        before decoding. The default (134 million: 512 x 512 x 512) keeps the peak memory of a load near
        2 GiB (stored values, float32 slices and the stacked volume); raise it for larger trusted studies.
    max_files: files found in a folder, a file list, an upload or a zip archive.
    max_total_bytes: bytes inflated from archives in one call (zip-bomb guard across many members).
    max_frames: frames declared by one DICOM file (checked before one record per frame is built).
    decode_seconds: time one compressed DICOM file may take in the decoder process (`decoder_process`).
    decoder_memory_bytes: address-space cap of the decoder process.
    isolate_decoders: decode compressed pixel data in the decoder process (default); False decodes in the
        calling process, where a native abort takes the caller down (benchmarks only).
    """

    max_file_bytes: int = 2 * GiB
    max_voxels: int = 128 * MiB
    max_files: int = 5000
    max_total_bytes: int = 4 * GiB
    max_frames: int = 20000
    decode_seconds: int = 60
    decoder_memory_bytes: int = 4 * GiB
    isolate_decoders: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.isolate_decoders, bool):
            raise ConfigError(
                f"ReadLimits.isolate_decoders must be True or False, got {self.isolate_decoders!r}"
            )
        for f in fields(self):
            if f.name == "isolate_decoders":
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"ReadLimits.{f.name} must be a positive integer, got {value!r}")


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_file_size(name: str, n_bytes: int, limits: ReadLimits) -> None:
    if n_bytes > limits.max_file_bytes:
        raise StudyReadError(
            f"{name}: {human_bytes(n_bytes)} is over the per-file limit of "
            f"{human_bytes(limits.max_file_bytes)} (ReadLimits.max_file_bytes); pass a larger limit if this "
            "file is trusted"
        )


def check_file_count(what: str, n_files: int, limits: ReadLimits) -> None:
    if n_files > limits.max_files:
        raise StudyReadError(
            f"{what} holds more than {limits.max_files} files (ReadLimits.max_files); pass the folder of one "
            "series, or a larger limit"
        )


def check_voxels(name: str, shape: tuple[int, ...], limits: ReadLimits) -> None:
    n = 1
    for s in shape:
        n *= int(s)
    if n > limits.max_voxels:
        raise StudyReadError(
            f"{name}: an image of shape {tuple(int(s) for s in shape)} ({n:,} voxels) is over the limit of "
            f"{limits.max_voxels:,} voxels (ReadLimits.max_voxels); pass a larger limit if this study is "
            "trusted"
        )


def bounded_read(stream: BinaryIO, cap: int, name: str, what: str = "decompressed size") -> bytes:
    """Read a whole stream, failing as soon as it yields more than `cap` bytes (never trusts headers)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(16 * MiB, cap + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            raise StudyReadError(
                f"{name}: {what} is over {human_bytes(cap)} (ReadLimits); the file may be a decompression "
                "bomb, or pass a larger limit if it is trusted"
            )
    return b"".join(chunks)
