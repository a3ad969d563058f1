"""Upload-to-verdict time and memory of the review app (a benchmark, not a test).

    python app/benchmark.py --models models --study ../shared/data/brats2015/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz
    python app/benchmark.py --models models --study ../shared/data/dicom/dcm_qa_nih/In/20180918GE/mr_0004

Drives an app script (default app/main.py; `--app` times another checkout's, for before/after figures) in
this process with Streamlit's AppTest (the server's script path without the browser): loads the page
(model catalogue), chooses the `--dataset` / `--method` model (in the picker of an app that offers models
before the upload; as the reader's choice in the session for one that offers them after reading it),
uploads the study (one file, or every file of a folder, as a reader would drop a DICOM series) and reruns
until the verdict is rendered. Then times a plain rerun (a widget changed: the opacity
slider) and a switch to a second model of the same dataset when one exists (`--switch-method`). Prints one
JSON line: the three times, the verdict, the process's resident memory at rest (page loaded, model listed),
after scoring, and its peak. Without `--study`, a synthetic 240 x 240 x 155 volume (BraTS size) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

APP = str(Path(__file__).resolve().parent / "main.py")


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_study(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    volume = np.zeros((240, 240, 155), np.float32)
    yy, xx = np.mgrid[:240, :240]
    head = ((yy - 120) / 90) ** 2 + ((xx - 120) / 75) ** 2 <= 1
    volume[head, 20:140] = 300 + rng.normal(0, 20, (int(head.sum()), 120))
    path = folder / "synthetic_240x240x155.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    return path


def upload_list(study: Path) -> list[tuple[str, bytes, str]]:
    """One file, or every file under a folder (a DICOM series as dropped into the uploader)."""
    files = sorted(p for p in study.rglob("*") if p.is_file()) if study.is_dir() else [study]
    return [(p.name, p.read_bytes(), "application/octet-stream") for p in files]


def timed_run(app) -> float:
    started = time.perf_counter()
    app.run()
    seconds = time.perf_counter() - started
    errors = [e.value for e in app.exception] + [e.value for e in app.error]
    if errors or not app.subheader:
        raise SystemExit(f"the app did not score the study: {errors}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    from streamlit.testing.v1 import AppTest

    from kdmed.review import model_catalogue

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--app", default=APP, help="the app script to drive (default: this checkout's)")
    parser.add_argument("--models", default="models", help="the pipeline's model folder")
    parser.add_argument("--method", default="stpm", help="pick the first model of this method")
    parser.add_argument("--dataset", default="brain", help="...and of this dataset")
    parser.add_argument("--switch-method", default="rd4ad", help="then switch to this method's model")
    parser.add_argument("--study", default=None, help="a NIfTI file or a DICOM folder (default: synthetic)")
    args = parser.parse_args(argv)
    os.environ["KDMED_MODELS_DIR"] = str(Path(args.models).resolve())
    with tempfile.TemporaryDirectory() as scratch:
        study = Path(args.study) if args.study else synthetic_study(Path(scratch))
        files = upload_list(study)
        app = AppTest.from_file(args.app, default_timeout=600)
        app.run()
        catalogue = model_catalogue(os.environ["KDMED_MODELS_DIR"])  # the app's order: catalogue positions

        def pick(method: str) -> int | None:
            names = [(entry.header.card.dataset, entry.header.card.method) for entry in catalogue]
            return names.index((args.dataset, method)) if (args.dataset, method) in names else None

        index = pick(args.method)
        if index is None:
            raise SystemExit(f"no {args.dataset} / {args.method} model under {args.models}")
        if any(box.key == "model" for box in app.selectbox):  # an app that offers models before the upload
            app.selectbox(key="model").set_value(index).run()
        else:
            app.session_state["model"] = index  # the reader's choice, kept when it fits the upload
        at_rest = current_rss_mib()
        app.file_uploader(key="uploads_files or a zip").set_value(files)
        upload_s = timed_run(app)
        verdict = app.subheader[0].value
        after = current_rss_mib()
        app.slider(key="opacity").set_value(0.8)
        rerun_s = timed_run(app)
        switch_s = None
        other = pick(args.switch_method)
        if other is not None:
            app.selectbox(key="model").set_value(other)
            switch_s = round(timed_run(app), 2)
        print(
            json.dumps(
                {
                    "study": study.name,
                    "files": len(files),
                    "app": args.app,
                    "model": catalogue[index].label,
                    "upload_to_verdict_s": round(upload_s, 2),
                    "rerun_s": round(rerun_s, 3),
                    "model_switch_s": switch_s,
                    "verdict": verdict,
                    "rss_at_rest_mib": round(at_rest),
                    "rss_after_scoring_mib": round(after),
                    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            )
        )


if __name__ == "__main__":
    main()
