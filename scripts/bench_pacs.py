"""PACS round trip on a real study: the 4-series GE study of dcm_qa_nih stored into a fresh Orthanc, scored
with `kdmed pacs score`'s path and its SEG + KOS stored back; seconds end to end and per step.

    python scripts/bench_pacs.py [--model models/brain/stpm/model.safetensors] [--data ../shared/data]

Orthanc is started from Debian's package in a temporary folder and stopped by its PID (`make pacs-server`
installs it as root).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pydicom

from kdmed.pacs.client import Pacs
from kdmed.pacs.orthanc import start, stop
from kdmed.pacs.score import score_study_on_pacs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models/brain/stpm/model.safetensors")
    parser.add_argument("--data", default="../shared/data")
    args = parser.parse_args()
    study_dir = Path(args.data) / "dicom" / "dcm_qa_nih" / "In" / "20180918GE"
    files = sorted(p for p in study_dir.rglob("*") if p.is_file() and not p.name.endswith(".txt"))
    with tempfile.TemporaryDirectory() as scratch:
        server = start(scratch)
        try:
            pacs = Pacs(server.url, timeout_s=120)
            datasets = [pydicom.dcmread(p) for p in files]
            started = time.perf_counter()
            for k in range(0, len(datasets), 100):
                pacs.store(datasets[k : k + 100])
            upload = time.perf_counter() - started
            study = datasets[0].StudyInstanceUID
            started = time.perf_counter()
            report = score_study_on_pacs(server.url, study, args.model, timeout_s=120)
            total = time.perf_counter() - started
            row = {"instances": len(datasets), "series": len({d.SeriesInstanceUID for d in datasets}),
                   "upload_s": round(upload, 2), "round_trip_s": round(total, 2), **report["pacs"]["seconds"],
                   "scored_series": report["pacs"]["scored_series_uid"], "n_scored": report["n_scored"],
                   "n_flagged": report["n_flagged"],
                   "series_after": sorted(e.modality for e in pacs.series(study))}  # fmt: skip
        finally:
            stop(scratch)
    print(json.dumps(row, indent=2))
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/pacs.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
