"""Scoring an archive on Dask: one task per study, results written as they arrive, resumable.

`dask.distributed` (Rocklin, SciPy 2015) runs the tasks: a `LocalCluster` of worker processes on this
machine by default, or any running scheduler (`tcp://host:8786`) whose workers have kdmed installed and
can read the archive's paths. Each worker keeps the checkpoint loaded (`kdmed.archive.worker`).

The table `OUT/results.csv` is rewritten atomically every few seconds and at the end, so an interrupted
run loses at most those seconds; the next run skips every study already in it (studies that failed too,
unless `retry_errors`). Identifying fields never enter it: studies are named by a pseudonym of their path
(`kdmed.archive.discover.study_id`), and the path itself only with `include_paths`.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

from kdmed import atomic
from kdmed.archive.discover import StudyRef, find_studies
from kdmed.archive.worker import COLUMNS, score_one
from kdmed.errors import KdmedError

log = logging.getLogger(__name__)

__all__ = ["RESULTS_NAME", "read_results", "score_archive"]

RESULTS_NAME = "results.csv"
FLUSH_SECONDS = 5.0


def read_results(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an earlier run's table by study id; {} when there is none."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "study" not in reader.fieldnames:
            raise KdmedError(
                f"{path} is not a kdmed results table (no 'study' column); pass another --out folder"
            )
        return {row["study"]: row for row in reader}


def score_archive(
    source: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    batch_size: int = 16,
    include_paths: bool = False,
    retry_errors: bool = False,
    progress: bool = True,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Score every study of `source` (folder tree or manifest) with the checkpoint `model`; the table
    goes to `out/results.csv`. Returns counts and throughput (JSON-able)."""
    model = str(Path(model).resolve())
    if not Path(model).is_file():
        raise KdmedError(f"model {model} does not exist; pass a checkpoint written by `kdmed train`")
    if scheduler is None and (not isinstance(workers, int) or workers < 1):
        raise KdmedError(f"--workers must be a positive integer, got {workers!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / RESULTS_NAME
    rows = read_results(table)
    studies, skipped_files = find_studies(source)
    todo = [s for s in studies if s.study not in rows or (retry_errors and rows[s.study]["error"])]
    columns = COLUMNS + (("source",) if include_paths else ())
    started = time.perf_counter()
    failed_here, worker_mb = 0, None
    if todo:
        task = {"model": model, "batch_size": batch_size, "runtime": runtime}
        failed_here, worker_mb = _run(
            todo, task, workers, scheduler, include_paths, rows, table, columns, progress
        )
    seconds = time.perf_counter() - started
    done = len(todo)
    return {
        "results": str(table),
        "studies": len(studies),
        "already_done": len(studies) - done,
        "scored_now": done - failed_here,
        "failed_now": failed_here,
        "skipped_files": skipped_files,
        "flagged": sum(r.get("verdict") == "flagged" for r in rows.values()),
        "seconds": round(seconds, 1),
        "studies_per_minute": round(60 * done / seconds, 1) if done and seconds > 0 else None,
        "worker_peak_rss_mb": worker_mb,  # the largest worker's peak resident memory
    }


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run(todo, task, workers, scheduler, include_paths, rows, table, columns, progress):
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    threads = max(1, (os.cpu_count() or 1) // workers) if scheduler is None else 0
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            host="127.0.0.1", silence_logs=logging.ERROR,
        )  # fmt: skip
    client = Client(scheduler or cluster)
    failed, last_flush, worker_mb = 0, time.monotonic(), None
    try:
        futures = {
            client.submit(score_one, ref.study, str(ref.path), **task, threads=threads, key=f"study-{ref.study}",
                          pure=False): ref
            for ref in todo
        }  # fmt: skip
        bar = tqdm(total=len(futures), unit="study", desc="score-archive", disable=not progress)
        for future in as_completed(futures):
            ref = futures[future]
            row = _result(future, ref)
            if include_paths:
                row["source"] = str(ref.path)
            rows[ref.study] = row
            failed += bool(row["error"])
            bar.update(1)
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                _write(table, rows, columns)
                last_flush = time.monotonic()
        bar.close()
        peaks = client.run(_peak_rss_mb)
        worker_mb = round(max(peaks.values()), 1) if peaks else None
    finally:
        _write(table, rows, columns)
        client.close()
        if cluster is not None:
            cluster.close()
    return failed, worker_mb


def _result(future, ref: StudyRef) -> dict[str, Any]:
    """The worker's row, or an error row when the task itself failed (its worker died every time)."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - KilledWorker and the like: recorded, never fatal
        row = dict.fromkeys(COLUMNS, "") | {"study": ref.study, "verdict": "error"}
        row["error"] = f"the worker scoring it failed ({type(error).__name__}: {error})"
        return row


def _write(table: Path, rows: dict[str, dict[str, Any]], columns: tuple[str, ...]) -> None:
    atomic.write_csv(table, [{c: row.get(c, "") for c in columns} for row in rows.values()], columns=columns)
