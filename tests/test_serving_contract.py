"""The acceptance test of the serving contract: a study scored the way a reader gets it (`kdmed score`, the
app's upload path) gets, slice by slice, the score the evaluate stage measured for it; slices outside the
evaluated slice policy are never scored or flagged; the study score follows the same aggregation.

Run on the tiny demo brain split with all three methods, and on one real BraTS 2015 test patient with a
model trained by the real stages on the real volumes (skipped with a reason when ../shared/data is absent).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdmed import rules
from kdmed.checkpoint import load_checkpoint
from kdmed.config import load_params
from kdmed.contract import SCORED
from kdmed.data.adapters import index_dataset
from kdmed.evaluate import evaluate_stage
from kdmed.inference import score_study
from kdmed.io import load_study
from kdmed.paths import checkpoint_path
from kdmed.score import score_source
from kdmed.train import train_stage

RELATIVE = 1e-4


def evaluated_scores(params, dataset: str, method: str) -> dict[str, dict[int, float]]:
    """scores.csv of the evaluate stage: patient -> slice index -> score."""
    path = Path(params.evaluate.out_dir) / dataset / method / "scores.csv"
    out: dict[str, dict[int, float]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            patient, name = row["name"].split("/slice_")
            out.setdefault(patient, {})[int(name)] = float(row["score"])
    return out


def assert_same_as_evaluated(report: dict, evaluated: dict[int, float], threshold: float) -> None:
    served = {s["slice"]: s for s in report["slices"]}
    scored = {k: s["score"] for k, s in served.items() if s["status"] == SCORED}
    assert set(scored) == set(evaluated), "serving scores exactly the slices the evaluate stage measured"
    for k, expected in evaluated.items():
        assert scored[k] == pytest.approx(expected, rel=RELATIVE, abs=1e-7), f"slice {k}"
        assert served[k]["flagged"] == bool(rules.flag([expected], threshold)[0]), f"slice {k}"
    outside = [s for s in report["slices"] if s["status"] != SCORED]
    assert all(s["score"] is None and not s["flagged"] for s in outside)
    assert report["n_flagged"] == sum(s["flagged"] for s in report["slices"])


def check_study(params, dataset: str, method: str, record, evaluated: dict[int, float]) -> None:
    model = checkpoint_path(params, dataset, method)
    checkpoint = load_checkpoint(model)
    report = score_source(record.image, model, batch_size=5)  # `kdmed score`, another batch size
    assert_same_as_evaluated(report, evaluated, checkpoint.threshold)
    expected_study = rules.aggregate_study(np.array(list(evaluated.values())), checkpoint.serving.aggregation)
    assert report["study_score"] == pytest.approx(expected_study, rel=RELATIVE)
    # the app's path: the file's bytes uploaded, read and scored in memory
    upload = [(Path(record.image).name, Path(record.image).read_bytes())]
    result = score_study(checkpoint, load_study(upload))
    app_scores = {
        k: result.scores[i] for i, k in enumerate(result.slice_indices) if result.status[i] == SCORED
    }
    assert set(app_scores) == set(evaluated)
    for k, expected in evaluated.items():
        assert app_scores[k] == pytest.approx(expected, rel=RELATIVE, abs=1e-7)
    assert not result.flagged[[s != SCORED for s in result.status]].any()


@pytest.mark.parametrize("method", ["stpm", "rd4ad", "mkd"])
def test_serving_reproduces_the_evaluated_scores_of_every_demo_test_slice(tiny_brain, method):
    train_stage(tiny_brain, "brain", method)
    evaluate_stage(tiny_brain, "brain", method)
    evaluated = evaluated_scores(tiny_brain, "brain", method)
    records = [
        r for r in index_dataset(tiny_brain.dataset("brain"), tiny_brain.common.seed) if r.split == "test"
    ]
    assert len(records) >= 2 and {r.patient for r in records} == set(evaluated)
    for record in records:
        check_study(tiny_brain, "brain", method, record, evaluated[record.patient])


@pytest.mark.realdata
def test_serving_reproduces_the_evaluated_scores_of_a_real_brats_test_patient(shared_data, tmp_path):
    """The real stages and settings (robust normalisation, 1 mm grid, slice policy) on the real BraTS
    2015 volumes (one patient per split), a small STPM; then the test patient's FLAIR scored from its file."""
    from kdmed.data.preprocess import preprocess_dataset

    repo = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((repo / "real" / "params.yaml").read_text())
    data["common"]["image_size"] = 64
    brats = {**data["datasets"]["brats"], "root": str(shared_data / "brats2015"), "extra_roots": []}
    data["datasets"] = {"brats2015": {**brats, "split": {"train": 0.34, "val": 0.33, "test": 0.33}}}
    data["pipeline"].update(datasets=["brats2015"], methods=["stpm"], ensembles=[])
    data["transfers"] = {}
    data["method_overrides"] = {"brats2015": {}}
    data["methods"]["stpm"].update(backbone="resnet18", weights="random", batch_size=16)
    data["preprocess"]["out_dir"] = str(tmp_path / "processed")
    data["train"].update(out_dir=str(tmp_path / "models"), epochs=1, steps=0, validate_every=1, resume=False)
    data["evaluate"]["out_dir"] = str(tmp_path / "reports")
    data["localize"].update(datasets=[], out_dir=str(tmp_path / "reports"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    params = load_params(tmp_path / "params.yaml")
    summary = preprocess_dataset("brats2015", params)
    assert summary["splits"]["test"]["anomalous"] > 0
    train_stage(params, "brats2015", "stpm")
    evaluate_stage(params, "brats2015", "stpm")
    evaluated = evaluated_scores(params, "brats2015", "stpm")
    (record,) = [
        r for r in index_dataset(params.dataset("brats2015"), params.common.seed) if r.split == "test"
    ]
    report = score_source(record.image, checkpoint_path(params, "brats2015", "stpm"), batch_size=16)
    assert report["n_slices"] == 155 and report["n_outside_trained_range"] == 155 - 90
    check_study(params, "brats2015", "stpm", record, evaluated[record.patient])
