"""Archive scoring throughput: studies per minute and worker memory for 1, 2 and 4 local Dask workers.

    python scripts/bench_archive.py            # after `make demo`: the 24 demo brain FLAIR volumes

Each run scores the same manifest into a fresh results folder with `kdmed.archive.score_archive` (the
`kdmed score-archive` path), cluster start-up included, as a user would see it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from kdmed.archive import score_archive


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", default="data/demo/brain", help="folder searched for *_flair.nii.gz")
    parser.add_argument("--model", default="models/brain/stpm/model.safetensors")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runtime", default="torch")
    args = parser.parse_args()
    volumes = sorted(Path(args.studies).rglob("*_flair.nii.gz"))
    if not volumes:
        raise SystemExit(f"no *_flair.nii.gz under {args.studies}; run `make demo` first")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "studies.txt"
        manifest.write_text("".join(f"{v.resolve()}\n" for v in volumes))
        for workers in args.workers:
            out = Path(scratch) / f"out-{workers}"
            summary = score_archive(
                manifest, args.model, out, workers=workers, progress=False, runtime=args.runtime
            )
            row = {"workers": workers, "studies": summary["scored_now"], "seconds": summary["seconds"],
                   "studies_per_minute": summary["studies_per_minute"],
                   "worker_peak_rss_mb": summary["worker_peak_rss_mb"]}  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/archive.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
