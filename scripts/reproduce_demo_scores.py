# Run from the repository root after `make demo`: python scripts/reproduce_demo_scores.py
"""`kdmed score` on every demo brain test volume against reports/brain/<method>/scores.csv, slice by slice."""

import csv
import json
import subprocess

from kdmed.config import load_params
from kdmed.data.adapters import index_dataset

params = load_params("params.yaml")
worst, count, flagged_outside = 0.0, 0, 0
for method in params.pipeline.methods:
    evaluated = {}
    with open(f"reports/brain/{method}/scores.csv") as handle:
        for row in csv.DictReader(handle):
            patient, k = row["name"].split("/slice_")
            evaluated.setdefault(patient, {})[int(k)] = float(row["score"])
    for record in [
        r for r in index_dataset(params.dataset("brain"), params.common.seed) if r.split == "test"
    ]:
        out = subprocess.run(
            [".venv/bin/kdmed", "score", record.image, "--model", f"models/brain/{method}/model.safetensors"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        report = json.loads(out)
        served = {s["slice"]: s for s in report["slices"] if s["status"] == "scored"}
        assert set(served) == set(evaluated[record.patient]), (method, record.patient)
        for k, v in evaluated[record.patient].items():
            worst = max(worst, abs(served[k]["score"] - v) / max(abs(v), 1e-12))
            count += 1
        flagged_outside += sum(s["flagged"] for s in report["slices"] if s["status"] != "scored")
print(
    json.dumps(
        {
            "slices_compared": count,
            "max_relative_difference": worst,
            "flagged_outside_policy": flagged_outside,
        }
    )
)
