"""Does INT8 keep the answers? Every demo model scored in float and in INT8 on its test split.

    python scripts/check_int8.py          # after `make demo` (reads models/ and data/processed/)

Per model: the per-image Spearman rank agreement of INT8 maps with the float maps (mean and minimum over
the test images), and the image AUROC in float and INT8. `common.runtime: onnx-int8` is recommended only
where every model keeps Spearman >= 0.99 and moves its AUROC by less than 0.5 points. Calibration uses the
validation normals, as the evaluate stage does.
"""

from __future__ import annotations

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
from kdmed.runtimes import with_runtime

SPEARMAN_MIN, AUROC_MAX_CHANGE = 0.99, 0.5


def main() -> None:
    os.environ.setdefault("KDMED_CACHE", tempfile.mkdtemp(prefix="kdmed-int8-"))
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
            int8 = with_runtime(checkpoint, "onnx-int8", path, calibration=to_model_input(val).numpy())
            fast = predict_images(int8.detector, test.images, batch)
            rho = [
                spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(exact.maps, fast.maps, strict=True)
            ]
            auroc = 100 * image_auroc(test.labels, exact.scores), 100 * image_auroc(test.labels, fast.scores)
            row = {
                "model": f"{dataset}/{method}",
                "spearman_mean": round(float(np.nanmean(rho)), 4),
                "spearman_min": round(float(np.nanmin(rho)), 4),
                "auroc_float": round(auroc[0], 2),
                "auroc_int8": round(auroc[1], 2),
            }
            row["keeps_answers"] = (
                row["spearman_min"] >= SPEARMAN_MIN and abs(auroc[1] - auroc[0]) < AUROC_MAX_CHANGE
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("INT8 keeps every model's answers" if all(r["keeps_answers"] for r in rows) else
          "INT8 changes some answers: keep common.runtime torch or onnx for those")  # fmt: skip
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/int8_check.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
