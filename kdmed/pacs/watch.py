"""`kdmed pacs watch`: score each new study of a PACS exactly once, across restarts.

Every `interval_s` the study list is read (QIDO-RS); each study not yet in the state file is scored and
its results stored (`kdmed.pacs.score`), then recorded in the state file (JSON, written atomically after
each study). A restarted watcher reads the file and skips what is in it, so no study is scored twice;
one that failed is recorded with its error and retried only with `retry_errors`. kdmed's own SEG and KOS
go into the scored study, so they never look like a new study.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from kdmed import atomic
from kdmed.errors import KdmedError
from kdmed.pacs.client import Pacs
from kdmed.pacs.score import score_study_on_pacs

log = logging.getLogger(__name__)

__all__ = ["watch"]


def _load(state: Path) -> dict[str, Any]:
    if not state.is_file():
        return {}
    try:
        return json.loads(state.read_text())
    except json.JSONDecodeError as error:
        raise KdmedError(
            f"state file {state} is not valid JSON ({error}); move it away to start afresh"
        ) from None


def watch(url: str, model: str | Path, state: str | Path, *, interval_s: float = 30.0, once: bool = False,
          retry_errors: bool = False, timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
    """Poll and score until interrupted (or one pass with `once`); returns the counts of the last pass."""
    state = Path(state)
    done = _load(state)
    pacs = Pacs(url, timeout_s)
    while True:
        scored = failed = 0
        for study in pacs.studies():
            previous = done.get(study.uid)
            if previous is not None and (previous["status"] == "done" or not retry_errors):
                continue
            try:
                report = score_study_on_pacs(url, study.uid, model, timeout_s=timeout_s)
                done[study.uid] = {"status": "done", "flagged": report.get("study_flagged"),
                                   "seg_series_uid": report["pacs"]["seg_series_uid"]}  # fmt: skip
                scored += 1
            except KdmedError as error:
                log.warning("study %s: %s", study.uid, error)
                done[study.uid] = {"status": "error", "error": str(error)}
                failed += 1
            atomic.write_text(state, json.dumps(done, indent=2))
        summary = {"studies_known": len(done), "scored_now": scored, "failed_now": failed}
        if once:
            return summary
        log.info("pacs watch: %s", summary)
        time.sleep(interval_s)
