"""`kdmed pacs score`: retrieve a study's series, score it as `kdmed score` does, store SEG + KOS back.

Retrieve (WADO-RS) the image series into a private folder, score that folder with `score_source` (the
app's and the evaluate stage's path; the series kdmed picks by default, or `series_uid`), build the SEG
and the KOS from the scored series (`kdmed.pacs.results`), re-read both from their bytes as a check, and
only then store them (STOW-RS, one request). Nothing is stored when any earlier step fails. Returns the
`kdmed score` report with a `pacs` section: the new series' UIDs and the seconds spent retrieving,
scoring and storing.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kdmed.pacs.client import Pacs, PacsError
from kdmed.pacs.results import flagged_mask, key_objects, map_level, segmentation

__all__ = ["score_study_on_pacs"]


def _reread(dataset) -> None:
    """The object as a viewer would get it: written to bytes and read back by pydicom."""
    import pydicom

    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    pydicom.dcmread(buffer)


def score_study_on_pacs(
    url: str,
    study_uid: str,
    model: str | Path,
    *,
    series_uid: str | None = None,
    store: bool = True,
    timeout_s: float = 30.0,
    batch_size: int = 16,
) -> dict[str, Any]:
    from kdmed.checkpoint import load_checkpoint
    from kdmed.runtimes import with_runtime
    from kdmed.score import score_source

    started = time.perf_counter()
    pacs = Pacs(url, timeout_s)
    checkpoint = with_runtime(load_checkpoint(model), "torch", model)
    timings: dict[str, float] = {"load_model_s": time.perf_counter() - started}
    started = time.perf_counter()
    wanted = pacs.image_series(study_uid, series_uid)
    with tempfile.TemporaryDirectory(prefix="kdmed-pacs-") as scratch:
        folder = Path(scratch) / "study"
        by_series: dict[str, list] = {}
        for entry in wanted:
            instances = pacs.retrieve(study_uid, entry.uid)
            if not instances:
                raise PacsError(f"series {entry.uid} of study {study_uid} came back empty; it may have been "
                                "deleted meanwhile")  # fmt: skip
            by_series[entry.uid] = instances
            for k, ds in enumerate(instances):
                target = folder / entry.uid / f"{k:05d}.dcm"
                target.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(target, enforce_file_format=True)
        timings["retrieve_s"] = time.perf_counter() - started
        started = time.perf_counter()
        report = score_source(folder, model, out=Path(scratch) / "out", series_uid=series_uid,
                              batch_size=batch_size, checkpoint=checkpoint)  # fmt: skip
        timings["score_s"] = time.perf_counter() - started
        started = time.perf_counter()
        scored_uid = report.get("input", {}).get("series", {}).get("uid")
        if scored_uid not in by_series:
            raise PacsError(f"kdmed scored series {scored_uid}, which was not retrieved; pass --series")
        maps = np.load(Path(scratch) / "out" / "maps.npz")["maps"]
        sources = by_series[scored_uid]
        masks = flagged_mask(report, maps, map_level(report, checkpoint))
        try:
            results = [segmentation(sources, masks, report), key_objects(sources, report)]
        except (ValueError, AttributeError) as error:  # highdicom's checks of the source instances
            raise PacsError(
                f"cannot write kdmed's results for series {scored_uid} as DICOM: {error}"
            ) from None
        for dataset in results:
            _reread(dataset)
        timings["build_s"] = time.perf_counter() - started
    started = time.perf_counter()
    if store:
        pacs.store(results)
    timings["store_s"] = time.perf_counter() - started
    report.pop("outputs", None)  # the scratch folder is gone
    report["pacs"] = {
        "url": pacs.url,
        "study_uid": study_uid,
        "scored_series_uid": scored_uid,
        "stored": store,
        "seg_series_uid": str(results[0].SeriesInstanceUID),
        "kos_series_uid": str(results[1].SeriesInstanceUID),
        "seg_frames_marked": sorted(int(n) for n, m in masks.items() if m.any()),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    return report
