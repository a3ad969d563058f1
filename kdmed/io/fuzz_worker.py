"""The fuzzer's sandbox: a process that loads one case at a time and reports how `load_study` ended.

    python -m kdmed.io.fuzz_worker MEMORY_BYTES     (driven by `kdmed.io.fuzz`, one JSON line per case)

It caps its own address space (RLIMIT_AS) before reading anything, so an input that makes a reader
allocate past the cap fails here with MemoryError instead of exhausting the machine. Each request is a
JSON line {"path": ..., "name": ..., "as_bytes": bool}; each answer is a JSON line with the outcome:
loaded, refused (a KdmedError), raw (any other exception, BaseException subclasses included) or memory.
A crash (signal) or a hang is seen by the parent, which then starts a fresh worker.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def classify(exc: BaseException) -> str:
    """memory, refused (a KdmedError from a check) or raw (anything else, and what only `boundary` caught)."""
    from kdmed.errors import KdmedError
    from kdmed.io.guard import UnexpectedReaderError

    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, MemoryError):
            return "memory"
        chain = chain.__cause__
    if isinstance(exc, UnexpectedReaderError):
        return "raw"
    return "refused" if isinstance(exc, KdmedError) else "raw"


def run_case(request: dict) -> dict:
    from kdmed.io import load_study

    path = Path(request["path"])
    source = [(request["name"], path.read_bytes())] if request.get("as_bytes") else path
    started = time.perf_counter()
    try:
        study = load_study(source)
    except BaseException as exc:  # noqa: BLE001 - the sandbox records every ending, panics included
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        outcome = classify(exc)
        return {"outcome": outcome, "error": type(exc).__name__, "message": message,
                "seconds": time.perf_counter() - started}  # fmt: skip
    return {"outcome": "loaded", "shape": list(study.array.shape), "seconds": time.perf_counter() - started}


def main() -> None:
    memory = int(sys.argv[1])
    import kdmed.io  # noqa: F401 - imported before the cap: the libraries' own mappings are not the case's
    from kdmed.io.decoder_process import DECODER
    from kdmed.io.limits import ReadLimits

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    DECODER.warm(ReadLimits().decoder_memory_bytes)  # its start-up is not charged to the first case
    answers = os.fdopen(os.dup(1), "w")  # the protocol's own stdout: libraries' prints go to stderr
    os.dup2(2, 1)
    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in sys.stdin:
        print(json.dumps(run_case(json.loads(line))), file=answers, flush=True)


if __name__ == "__main__":
    main()
