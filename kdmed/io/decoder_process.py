"""Native pixel decoders run in a reusable worker process with a time and memory limit.

GDCM can abort the whole process with an uncaught C++ exception (a JPEG-LS file with Columns = 32768),
pylibjpeg-rle panics (a BaseException) on inconsistent sizes, and any decoder can run away on crafted data.
Compressed DICOM pixel data is therefore decoded in `decoder_worker`, one process started on first use
and reused across frames, files and calls; when it dies or overruns it is replaced, and the caller gets a
`StudyReadError` that names the file, the transfer syntax and what happened. Uncompressed data never pays
for this: numpy reads it in the calling process.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

import numpy as np
from pydicom.dataset import Dataset

from kdmed.errors import StudyReadError
from kdmed.io.decoder_worker import write_frame

_START_SECONDS = 120.0


class DecoderCrash(StudyReadError):
    """The decoder process died, overran its time, or ran out of memory on one file."""


class DecoderProcess:
    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._memory = 0
        self._lock = threading.Lock()

    def _start(self, memory_bytes: int) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RUST_BACKTRACE": "0"}
        process = subprocess.Popen(
            [sys.executable, "-m", "kdmed.io.decoder_worker", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if _receive(process, _START_SECONDS) != ("ready",):
            process.kill()
            raise StudyReadError(
                "the pixel decoder process did not start; run `python -m kdmed.io.decoder_worker 4000000000` "
                "to see why"
            )
        self._memory = memory_bytes
        return process

    def warm(self, memory_bytes: int) -> None:
        """Start the process now (about 0.5 s), so the first compressed file does not wait for it."""
        with self._lock:
            if self._process is None or self._process.poll() is not None or self._memory != memory_bytes:
                self.close()
                self._process = self._start(memory_bytes)

    def decode(
        self, name: str, request: dict[str, Any], syntax: str, seconds: float, memory_bytes: int
    ) -> tuple:
        """The worker's answer for one file: ("ok", array) or ("error", kind, type, message)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None or self._memory != memory_bytes:
                self.close()
                self._process = self._start(memory_bytes)
            process = self._process
            try:
                write_frame(process.stdin, request)
                answer = _receive(process, seconds)
            except (BrokenPipeError, EOFError, OSError):  # the process ended mid-request: a crash
                answer = "ended"
            if isinstance(answer, tuple):
                return answer
            self._process = None
            try:
                code = process.wait(timeout=5) if answer == "ended" else None
            except subprocess.TimeoutExpired:
                code = None
            if code is None:  # still running: a hang
                process.kill()
                process.wait()
                raise DecoderCrash(
                    f"{name}: decoding its {syntax} pixel data did not finish within {seconds:g} s "
                    "(ReadLimits.decode_seconds); the compressed data is likely corrupt: export the file again, "
                    "or raise the limit if it is a very large trusted image"
                )
            how = signal.Signals(-code).name if code < 0 else f"exit status {code}"
            raise DecoderCrash(
                f"{name}: the {syntax} decoder crashed on this file's pixel data ({how}); the compressed data "
                "is corrupt or its header sizes are wrong: export the file again from the scanner or PACS"
            )

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _receive(process: subprocess.Popen, seconds: float) -> tuple | None:
    stdout: IO[bytes] = process.stdout  # type: ignore[assignment]
    deadline = time.monotonic() + seconds
    head = _read_exactly(stdout, 8, deadline)
    if head is None:
        return None  # the deadline passed
    size = int.from_bytes(head, "little")
    body = _read_exactly(stdout, size, deadline)
    if body is None:
        return None
    import pickle

    return pickle.loads(body)


def _read_exactly(stream: IO[bytes], n: int, deadline: float) -> bytes | None:
    chunks, got = [], 0
    fd = stream.fileno()
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, min(n - got, 1 << 24))
        if not chunk:
            raise EOFError("the decoder process closed its output")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


DECODER = DecoderProcess()
atexit.register(DECODER.close)


# what pydicom's decoders read: the Image Pixel module (PS3.3 C.7.6.3), frames and offset tables
_PIXEL_KEYWORDS = (
    "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "NumberOfFrames", "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths", "PixelData",
)  # fmt: skip


def decode_isolated(
    name: str, ds: Dataset, *, syntax_uid: str, syntax_name: str, seconds: float, memory_bytes: int
) -> np.ndarray:
    """`ds.pixel_array` of one DICOM data set, computed in the decoder process from a copy of its pixel
    module (a few elements and the compressed bytes: the file is neither re-sent nor re-parsed).

    Raises RuntimeError (the plug-ins refused the data: the caller names the packages) or DecoderCrash
    (a crash, a hang, memory, or any other failure inside the decoder, with the decoder's own message)."""
    pixels = Dataset()
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            pixels[keyword] = ds[keyword]
    request = {"dataset": pixels, "ts": str(syntax_uid)}
    answer = DECODER.decode(name, request, syntax_name, seconds, memory_bytes)
    if answer[0] == "ok":
        return answer[1]
    _, kind, kind_name, message = answer
    if kind == "memory":
        raise DecoderCrash(
            f"{name}: decoding its {syntax_name} pixel data needs more than {memory_bytes / 1024**3:.1f} GiB "
            "(ReadLimits.decoder_memory_bytes); the header sizes are likely wrong: export the file again"
        )
    if kind == "decoder":
        raise RuntimeError(message)
    raise DecoderCrash(
        f"{name}: the {syntax_name} decoder failed on this file's pixel data ({kind_name}: {message}); the "
        "compressed data is corrupt or its header sizes are wrong: export the file again from the scanner or PACS"
    )
