"""Upload-to-flagged-list time and memory of the review app (a benchmark, not a test).

    python app/benchmark.py --models models --study ../shared/data/brats2015/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz

Drives app/main.py in this process with Streamlit's AppTest (the server's script path without the
browser): loads the page (model catalogue), then uploads the study and reruns until the verdict and the
flagged list are rendered. Prints one JSON line: seconds from upload to flagged list (reading, MONAI
preprocessing, scoring every slice, display views), the process's resident memory at rest (page loaded,
model listed) and its peak while scoring. The first model of the catalogue is used unless `--model-index`.
Without `--study`, a synthetic 240 x 240 x 155 volume (BraTS size) is written to a temporary file.
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


def main(argv: list[str] | None = None) -> None:
    from streamlit.testing.v1 import AppTest

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="models", help="the pipeline's model folder")
    parser.add_argument("--model-index", type=int, default=None, help="catalogue position (default: first)")
    parser.add_argument("--method", default="stpm", help="pick the first model of this method")
    parser.add_argument("--dataset", default="brain", help="...and of this dataset")
    parser.add_argument("--study", default=None, help="a NIfTI file (default: a synthetic BraTS-size volume)")
    args = parser.parse_args(argv)
    os.environ["KDMED_MODELS_DIR"] = str(Path(args.models).resolve())
    with tempfile.TemporaryDirectory() as scratch:
        study = Path(args.study) if args.study else synthetic_study(Path(scratch))
        data = study.read_bytes()
        app = AppTest.from_file(APP, default_timeout=600)
        app.run()
        options = app.selectbox(key="model").options
        index = args.model_index
        if index is None:
            index = next(i for i, o in enumerate(options) if o.startswith(f"{args.dataset} / {args.method} "))
        app.selectbox(key="model").set_value(index).run()
        at_rest = current_rss_mib()
        app.file_uploader(key="uploads_files or a zip").set_value(
            [(study.name, data, "application/octet-stream")]
        )
        started = time.perf_counter()
        app.run()
        seconds = time.perf_counter() - started
        errors = [e.value for e in app.exception] + [e.value for e in app.error]
        if errors or not app.subheader:
            raise SystemExit(f"the app did not score the study: {errors}")
        print(
            json.dumps(
                {
                    "study": study.name,
                    "shape": list(nib.load(str(study)).shape),
                    "model": options[index],
                    "upload_to_flagged_list_s": round(seconds, 2),
                    "verdict": app.subheader[0].value,
                    "rss_at_rest_mib": round(at_rest),
                    "rss_after_scoring_mib": round(current_rss_mib()),
                    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            )
        )


if __name__ == "__main__":
    main()
