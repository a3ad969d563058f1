"""One archive study scored on a Dask worker: `kdmed score`'s path, its answer as one table row.

The checkpoint is loaded once per worker process and kept (`_checkpoint`), so a worker pays the model
load once, not per study. Every failure a study can cause becomes the row's `error`, never an exception
that would stop the archive; a worker that dies (a crash, the memory limit) is Dask's to retry, and
`kdmed.archive.run` records the study as failed when it gives up.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from kdmed.errors import KdmedError

log = logging.getLogger(__name__)

__all__ = ["COLUMNS", "score_one"]

# The results table: a pseudonymous study id and what was found (`out_of_distribution`: the guard of
# `kdmed.ood`, yes / no / unchecked); `source` only with --include-paths.
COLUMNS = (
    "study", "verdict", "study_score", "study_normalized", "threshold", "n_scored", "n_flagged",
    "out_of_distribution", "kind", "seconds", "error",
)  # fmt: skip


@functools.lru_cache(maxsize=2)
def _checkpoint(model: str, mtime_ns: int, runtime: str):
    from kdmed.checkpoint import load_checkpoint
    from kdmed.runtimes import with_runtime

    return with_runtime(load_checkpoint(model), runtime, model)


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def score_one(
    study: str, path: str, model: str, batch_size: int = 16, runtime: str = "torch", threads: int = 0
) -> dict[str, Any]:
    """Score the study at `path` with the checkpoint at `model`; a row of `COLUMNS`, `error` empty when
    it was scored. `threads`: torch threads for this worker (0 leaves torch's default)."""
    from kdmed.score import score_source

    started = time.perf_counter()
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "") | {"study": study}
    try:
        _set_threads(threads)
        checkpoint = _checkpoint(model, Path(model).stat().st_mtime_ns, runtime)
        report = score_source(path, model, batch_size=batch_size, checkpoint=checkpoint)
        row.update(_summary(report))
    except KdmedError as error:
        row.update(verdict="error", error=str(error))
    except Exception as error:  # noqa: BLE001 - one bad study must not stop an archive of thousands
        log.exception("archive study %s", study)
        row.update(
            verdict="error", error=f"internal error ({type(error).__name__}: {error}); please report it"
        )
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    kind = report.get("kind")
    flagged = report.get("study_flagged")
    if kind == "images":  # a folder of 2D images: flagged when any image is
        flagged = report.get("n_flagged", 0) > 0
        score = max((i["score"] for i in report["images"] if i.get("score") is not None), default=None)
    else:
        score = report.get("study_score")
    return {
        "verdict": "flagged" if flagged else ("normal" if score is not None else "not scored"),
        "study_score": "" if score is None else score,
        "study_normalized": report.get("study_normalized", "") if kind != "images" else "",
        "threshold": report.get("threshold", ""),
        "n_scored": report.get("n_scored", 1 if kind == "image" and score is not None else 0),
        "n_flagged": report.get("n_flagged", 0),
        "out_of_distribution": _guard(report.get("out_of_distribution", {})),
        "kind": kind,
    }


def _guard(check: dict[str, Any]) -> str:
    """The out-of-distribution guard in one word (`kdmed.ood`): yes, no, or unchecked (no profile)."""
    if "n_warned" in check:  # a folder of 2D images: yes when any image warned
        return "yes" if check["n_warned"] else ("no" if check["n_checked"] else "unchecked")
    if not check.get("available"):
        return "unchecked"
    return "yes" if check.get("warn") else "no"
