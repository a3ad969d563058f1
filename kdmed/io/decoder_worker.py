"""The process that runs native pixel decoders (GDCM, pylibjpeg plug-ins, pyjpegls) for `decoder_process`.

    python -m kdmed.io.decoder_worker MEMORY_BYTES      (started by kdmed; speaks pickled frames on stdio)

A C++ exception that aborts, a Rust panic or a runaway allocation inside a decoder ends or fails this
process only. It caps its own address space, then answers each request (the Image Pixel module and pixel
data of one DICOM file, as a pickled pydicom Dataset) with ("ok", array) or ("error", kind, exception type, message), kind being "decoder" (the plug-ins refused
the data), "memory" or "corrupt".
"""

from __future__ import annotations

import os
import pickle
import resource
import struct
import sys
import warnings


def _read_frame(stream) -> object | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))


def write_frame(stream, obj: object) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(payload)) + payload)
    stream.flush()


def decode(request: dict) -> tuple:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = request["dataset"]  # the Image Pixel module and the pixel data only (pickled by pydicom)
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(request["ts"])
            return ("ok", ds.pixel_array)
    except MemoryError:
        return ("error", "memory", "MemoryError", "")
    except (RuntimeError, NotImplementedError) as exc:
        return ("error", "decoder", type(exc).__name__, " ".join(str(exc).split())[:300])
    except BaseException as exc:  # noqa: BLE001 - panics are BaseExceptions; report, never die of them
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return ("error", "corrupt", type(exc).__name__, " ".join(str(exc).split())[:300])


def main() -> None:
    import pydicom.pixels  # noqa: F401 - plug-ins load before the cap

    memory = int(sys.argv[1])
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)  # a parent's cap is inherited: never ask above it
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # the protocol gets its own copy of stdout; what decoders print (GDCM writes warnings to stdout) goes
    # to stderr instead, so it can never corrupt an answer
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    write_frame(stdout, ("ready",))
    while (request := _read_frame(stdin)) is not None:
        write_frame(stdout, decode(request))


if __name__ == "__main__":
    main()
