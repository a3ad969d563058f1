"""Seeded fuzzing of `kdmed.io.load_study`: mutated DICOM, NIfTI and 2D files, each loaded in a sandbox.

    python -m kdmed.io.fuzz --minutes 10 --seed 0            # generated seeds + ../shared/data seeds
    python -m kdmed.io.fuzz --cases 10000 --seed 1 --jobs 2  # a fixed number of cases

Every case is a mutation (`fuzz_mutate`) of a seed file (`fuzz_seeds`), loaded by a worker process
(`fuzz_worker`) under an address-space cap (default 4 GiB) and a time limit (default 5 s). Workers are
reused across cases and replaced when one crashes or hangs. The table printed at the end counts, per
family: loaded, refused with a kdmed error, raw library error, hang, process abort and memory blow-up.
Every bad case (the last four columns) is written to --save-bad with its label, to be replayed with
`load_study`. Exit status 1 when any case was bad.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdmed.io.fuzz_mutate import mutate
from kdmed.io.fuzz_seeds import FAMILIES, Seed, shared_seeds, synthetic_seeds

OUTCOMES = ("loaded", "refused", "raw", "hang", "abort", "memory")
BAD = ("raw", "hang", "abort", "memory")
_HEADINGS = {
    "loaded": "loaded",
    "refused": "refused with a kdmed error",
    "raw": "raw library error",
    "hang": "hang",
    "abort": "process abort",
    "memory": "memory blow-up",
}
_NAMES = {"dicom": "DICOM", "nifti": "NIfTI", "image": "2D images"}
GiB = 1024**3


@dataclass(frozen=True)
class Case:
    number: int
    seed: Seed
    label: str
    data: bytes

    @property
    def name(self) -> str:
        return f"case{self.number:06d}-{self.seed.name.replace('/', '_')}"


@dataclass(frozen=True)
class Result:
    case: Case
    outcome: str
    detail: str
    seconds: float


def cases(seeds: list[Seed], seed: int, start: int = 0) -> Iterator[Case]:
    """An endless, deterministic stream: case k mutates seeds[k % len(seeds)] with the generator (seed, k)."""
    number = start
    while True:
        source = seeds[number % len(seeds)]
        label, data = mutate(source, np.random.default_rng([seed, number]))
        yield Case(number, source, label, data)
        number += 1


class Sandbox:
    """One worker process under a memory cap; `load` returns its outcome, restarting it after a crash."""

    def __init__(self, folder: Path, memory_bytes: int, timeout_s: float):
        self.folder, self.memory_bytes, self.timeout_s = folder, memory_bytes, timeout_s
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "kdmed.io.fuzz_worker", str(self.memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        ready = self._read_line(process, 120.0)
        if ready is None or not json.loads(ready).get("ready"):
            process.kill()
            raise RuntimeError(
                "the fuzz worker did not start (run `python -m kdmed.io.fuzz_worker` to see why)"
            )
        return process

    @staticmethod
    def _read_line(process: subprocess.Popen, timeout_s: float) -> str | None:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = process.stdout.readline()
        return line or None

    def load(self, case: Case) -> Result:
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        path = self.folder / case.name
        path.write_bytes(case.data)
        request = {"path": str(path), "name": case.seed.name.split("/")[-1], "as_bytes": case.number % 2 == 1}
        started = time.perf_counter()
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self._read_line(self.process, self.timeout_s)
        except BrokenPipeError:
            line = None
        seconds = time.perf_counter() - started
        try:
            if line is not None:
                try:
                    answer = json.loads(line)
                except ValueError:
                    self.close()
                    self.process = None
                    return Result(case, "abort", f"garbled answer from the worker: {line[:80]!r}", seconds)
                detail = answer.get("message") or str(answer.get("shape", ""))
                if answer.get("error"):
                    detail = f"{answer['error']}: {detail}"
                return Result(case, answer["outcome"], detail, seconds)
            return self._ended(case, seconds)
        finally:
            path.unlink(missing_ok=True)

    def _ended(self, case: Case, seconds: float) -> Result:
        assert self.process is not None
        code = self.process.poll()
        if code is None:  # still running: a hang
            self.process.kill()
            self.process.wait()
            self.process = None
            return Result(case, "hang", f"no answer within {self.timeout_s:g} s", seconds)
        self.process = None
        if code < 0 and -code == signal.SIGKILL:
            return Result(case, "memory", "killed (SIGKILL, likely out of memory)", seconds)
        name = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        return Result(case, "abort", f"the process died ({name})", seconds)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run(
    stream: Iterable[Case],
    *,
    jobs: int = 1,
    memory_bytes: int = 4 * GiB,
    timeout_s: float = 5.0,
    max_cases: int | None = None,
    deadline: float | None = None,
) -> list[Result]:
    """Load cases from `stream` in `jobs` sandboxes until `max_cases` or the `deadline` (time.monotonic)."""
    results: list[Result] = []
    lock = threading.Lock()
    iterator = iter(stream)

    def next_case() -> Case | None:
        with lock:
            if max_cases is not None and len(results) + pending[0] >= max_cases:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            pending[0] += 1
            return next(iterator, None)

    pending = [0]

    failures: list[BaseException] = []

    def loop(folder: Path) -> None:
        sandbox = Sandbox(folder, memory_bytes, timeout_s)
        try:
            while (case := next_case()) is not None:
                result = sandbox.load(case)
                with lock:
                    pending[0] -= 1
                    results.append(result)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            failures.append(exc)
        finally:
            sandbox.close()

    with tempfile.TemporaryDirectory(prefix="kdmed-fuzz-") as tmp:
        threads = []
        for k in range(jobs):
            folder = Path(tmp) / f"w{k}"
            folder.mkdir()
            threads.append(threading.Thread(target=loop, args=(folder,), daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return sorted(results, key=lambda r: r.case.number)


def table(results: list[Result]) -> str:
    """The counts per family, as a Markdown table (the README's)."""
    counts = {
        family: Counter(r.outcome for r in results if r.case.seed.family == family) for family in FAMILIES
    }
    lines = [
        "| family | tried | " + " | ".join(_HEADINGS[o] for o in OUTCOMES) + " |",
        "|---|---|" + "---|" * len(OUTCOMES),
    ]
    for family in FAMILIES:
        tried = sum(counts[family].values())
        cells = " | ".join(f"{counts[family][o]:,}" for o in OUTCOMES)
        lines.append(f"| {_NAMES[family]} | {tried:,} | {cells} |")
    total = Counter(r.outcome for r in results)
    lines.append(f"| all | {len(results):,} | " + " | ".join(f"{total[o]:,}" for o in OUTCOMES) + " |")
    return "\n".join(lines)


def save_bad(results: list[Result], folder: Path) -> int:
    bad = [r for r in results if r.outcome in BAD]
    if not bad:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "index.tsv").open("a") as index:
        for r in bad:
            (folder / r.case.name).write_bytes(r.case.data)
            index.write(f"{r.case.name}\t{r.outcome}\t{r.case.label}\t{r.detail}\t{r.seconds:.2f}\n")
    return len(bad)


def default_shared() -> Path:
    env = os.environ.get("KDMED_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long (default: 5)")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds before a case counts as a hang")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="address-space cap of each worker")
    parser.add_argument("--shared", type=Path, default=None, help="real seed files (default ../shared/data)")
    parser.add_argument("--shared-per-family", type=int, default=40, help="real seeds taken per family")
    parser.add_argument("--no-shared", action="store_true", help="generated seeds only")
    parser.add_argument("--save-bad", type=Path, default=Path("tmp/fuzz-bad"))
    args = parser.parse_args(argv)
    seeds = synthetic_seeds()
    shared = args.shared or default_shared()
    if not args.no_shared and shared.is_dir():
        seeds += shared_seeds(shared, args.shared_per_family, np.random.default_rng(args.seed))
    minutes = args.minutes if args.minutes is not None else (None if args.cases else 5.0)
    deadline = time.monotonic() + 60 * minutes if minutes is not None else None
    print(f"fuzzing with {len(seeds)} seeds, seed {args.seed}, {args.jobs} job(s)", file=sys.stderr)
    started = time.perf_counter()
    results = run(
        cases(seeds, args.seed),
        jobs=args.jobs,
        memory_bytes=int(args.memory_gb * GiB),
        timeout_s=args.timeout,
        max_cases=args.cases,
        deadline=deadline,
    )
    print(table(results))
    slowest = max((r.seconds for r in results), default=0.0)
    print(f"\n{len(results):,} cases in {time.perf_counter() - started:.0f} s; slowest case {slowest:.2f} s")
    n_bad = save_bad(results, args.save_bad)
    if n_bad:
        print(f"{n_bad} bad case(s) written to {args.save_bad}/ (index.tsv lists label and outcome)")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
