"""Does a reduced-precision runtime keep the answers? Every demo model scored in torch fp32 and in the
runtime on its test split.

    python scripts/check_runtime.py openvino-bf16     # after `make demo` (reads models/, data/processed/)
    python scripts/check_runtime.py onnx-int8

Per model: the per-image Spearman rank agreement of the runtime's maps with the fp32 maps (mean and
minimum over the test images), and the image AUROC in fp32 and in the runtime. A runtime is recommended
only where every model keeps Spearman >= 0.99 and moves its AUROC by less than 0.5 points (issue 16).
INT8 calibration uses the validation normals, as the evaluate stage does. Rows go to
.bench/runtime_check-RUNTIME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from kdmed.checkpoint import load_checkpoint
from kdmed.config import load_params
from kdmed.data.arrays import to_model_input
from kdmed.data.slices import load_split
from kdmed.inference import predict_images
from kdmed.metrics import image_auroc
from kdmed.paths import checkpoint_path
from kdmed.runtimes import RUNTIMES, with_runtime

SPEARMAN_MIN, AUROC_MAX_CHANGE = 0.99, 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", choices=[r for r in RUNTIMES if r != "torch"])
    runtime = parser.parse_args().runtime
    os.environ.setdefault("KDMED_CACHE", tempfile.mkdtemp(prefix="kdmed-check-"))
    params = load_params("params.yaml")
    rows = []
    for dataset in params.pipeline.datasets:
        test = load_split(params.preprocess.out_dir, dataset, "test")
        val = load_split(params.preprocess.out_dir, dataset, "val").normals().images[:64]
        for method in params.pipeline.methods:
            path = checkpoint_path(params, dataset, method)
            checkpoint = load_checkpoint(path)
            batch = params.method(method, dataset).batch_size
            exact = predict_images(checkpoint.detector, test.images, batch)
            served = with_runtime(checkpoint, runtime, path, calibration=to_model_input(val).numpy())
            fast = predict_images(served.detector, test.images, batch)
            rho = [
                spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(exact.maps, fast.maps, strict=True)
            ]
            auroc = 100 * image_auroc(test.labels, exact.scores), 100 * image_auroc(test.labels, fast.scores)
            row = {
                "model": f"{dataset}/{method}",
                "spearman_mean": round(float(np.nanmean(rho)), 4),
                "spearman_min": round(float(np.nanmin(rho)), 4),
                "auroc_float": round(auroc[0], 2),
                "auroc_runtime": round(auroc[1], 2),
            }
            row["keeps_answers"] = (
                row["spearman_min"] >= SPEARMAN_MIN and abs(auroc[1] - auroc[0]) < AUROC_MAX_CHANGE
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"{runtime} keeps every model's answers" if all(r["keeps_answers"] for r in rows) else
          f"{runtime} changes some answers: keep common.runtime torch or onnx for those")  # fmt: skip
    Path(".bench").mkdir(exist_ok=True)
    Path(f".bench/runtime_check-{runtime}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
