"""What the evaluate stage writes for `dvc plots` says what the scores say: roc.csv, pr.csv and
histogram.csv checked row by row against scores.csv (one row per test image, written from the same
scores), and the study-level AUROC against a hand count, on a tiny real run and on a constructed case."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from kdmed.contract import StudyAggregation
from kdmed.metrics import image_auroc
from kdmed.metrics.reported import study_scores

BINS = 30  # the evaluate stage's histogram bins


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], name: str, kind=float) -> np.ndarray:
    return np.array([kind(row[name]) for row in rows])


def pairwise_auroc(positives, negatives) -> float:
    """The Mann-Whitney count read literally: a positive above a negative scores 1, a tie one half."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


@pytest.fixture(scope="module")
def evaluated(tiny_brain, tmp_path_factory):
    """STPM trained for one epoch on the tiny brain set, then the real evaluate stage; its report folder,
    metrics, and the per-image scores it wrote."""
    from kdmed.evaluate import evaluate_stage
    from kdmed.train import train_stage

    root = tmp_path_factory.mktemp("reports_content")
    params = dataclasses.replace(
        tiny_brain,
        train=dataclasses.replace(tiny_brain.train, out_dir=str(root / "models"), epochs=1),
        evaluate=dataclasses.replace(tiny_brain.evaluate, out_dir=str(root / "reports")),
    )
    train_stage(params, "brain", "stpm")
    returned = evaluate_stage(params, "brain", "stpm")
    folder = root / "reports" / "brain" / "stpm"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["image_auroc"] == pytest.approx(returned["image_auroc"], abs=1e-6)
    rows = read_csv(folder / "scores.csv")
    labels, scores = column(rows, "label", int), column(rows, "score")
    assert len(rows) == metrics["test_images"] and 0 < labels.sum() < len(labels)
    assert np.unique(scores).size > 3, "a constant model would make every curve trivial"
    return folder, metrics, rows, labels, scores


def test_roc_csv_runs_from_0_0_to_1_1_and_matches_the_scores(evaluated):
    folder, metrics, _, labels, scores = evaluated
    roc = read_csv(folder / "roc.csv")
    fpr, tpr, threshold = column(roc, "fpr"), column(roc, "tpr"), column(roc, "threshold")
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert (np.diff(threshold) < 0).all()
    assert set(threshold[1:].tolist()) == set(scores.tolist())  # one point per distinct score
    for f, t, th in zip(fpr[1:], tpr[1:], threshold[1:], strict=True):
        # at a threshold the curve counts every score at or above it (a tie is taken whole)
        assert t == pytest.approx((scores[labels == 1] >= th).mean()), th
        assert f == pytest.approx((scores[labels == 0] >= th).mean()), th


def test_the_area_under_roc_csv_is_the_reported_auroc(evaluated):
    folder, metrics, _, labels, scores = evaluated
    roc = read_csv(folder / "roc.csv")
    fpr, tpr = column(roc, "fpr"), column(roc, "tpr")
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count one half
    expected = pairwise_auroc(scores[labels == 1], scores[labels == 0])
    assert area == pytest.approx(expected, abs=1e-9)
    assert metrics["image_auroc"] == pytest.approx(expected, abs=1e-6)  # metrics.json rounds to 6 places


def test_pr_csv_recall_and_precision_follow_from_the_scores(evaluated):
    folder, metrics, _, labels, scores = evaluated
    pr = read_csv(folder / "pr.csv")
    recall, precision, threshold = column(pr, "recall"), column(pr, "precision"), column(pr, "threshold")
    assert (np.diff(threshold) < 0).all() and (np.diff(recall) >= 0).all() and recall[-1] == 1.0
    assert set(threshold.tolist()) == set(scores.tolist())
    for r, p, th in zip(recall, precision, threshold, strict=True):
        flagged = scores >= th
        assert r == pytest.approx((flagged & (labels == 1)).sum() / (labels == 1).sum()), th
        assert p == pytest.approx((flagged & (labels == 1)).sum() / flagged.sum()), th
    assert precision[-1] == pytest.approx(labels.mean())  # everything flagged: precision = prevalence


def test_histogram_csv_counts_every_test_image_once_in_its_bin(evaluated):
    folder, metrics, _, labels, scores = evaluated
    histogram = read_csv(folder / "histogram.csv")
    normal, anomalous = column(histogram, "normal", int), column(histogram, "anomalous", int)
    centres = column(histogram, "score")
    assert len(histogram) == BINS
    assert normal.sum() == metrics["test_normal"] == (labels == 0).sum()
    assert anomalous.sum() == metrics["test_anomalous"] == (labels == 1).sum()
    width = (scores.max() - scores.min()) / BINS
    assert np.allclose(np.diff(centres), width) and centres[0] == pytest.approx(scores.min() + width / 2)
    edges = np.linspace(scores.min(), scores.max(), BINS + 1)
    for label, counts in ((0, normal), (1, anomalous)):
        assert counts.tolist() == np.histogram(scores[labels == label], bins=edges)[0].tolist()


def test_the_study_auroc_is_the_auroc_of_each_patients_highest_slice(evaluated):
    _, metrics, rows, labels, scores = evaluated
    assert metrics["study_aggregation"].startswith("max")
    patients = np.array([row["patient"] for row in rows])
    study = {p: (labels[patients == p].max(), scores[patients == p].max()) for p in set(patients.tolist())}
    positives = [s for y, s in study.values() if y == 1]
    negatives = [s for y, s in study.values() if y == 0]
    assert positives and negatives, f"the tiny test split needs both kinds of study: {study}"
    assert metrics["studies"] == len(study)
    assert metrics["study_auroc"] == pytest.approx(pairwise_auroc(positives, negatives), abs=1e-6)


# Four studies, seven slices. A patient is anomalous when any of its slices is.
#   a: slices 0.1 (normal), 0.6 (lesion)  -> anomalous, max 0.6, mean of top 2 = 0.35
#   b: slices 0.2 (normal), 0.3 (lesion)  -> anomalous, max 0.3, mean of top 2 = 0.25
#   c: slices 0.5, 0.2                    -> normal,    max 0.5, mean of top 2 = 0.35
#   d: slice  0.2                         -> normal,    max 0.2, mean of top 2 = 0.2
# max:   a > c, a > d, b < c, b > d                   -> 3 / 4 = 0.75
# top-2: a = c (a tie, one half), a > d, b < c, b > d -> 2.5 / 4 = 0.625
# Per slice (lesion slices 0.6, 0.3 against 0.1, 0.2, 0.5, 0.2, 0.2) it would be 9 / 10 = 0.9.
PATIENTS = np.array(["a", "a", "b", "b", "c", "c", "d"])
LABELS = np.array([0, 1, 0, 1, 0, 0, 0])
SCORES = np.array([0.1, 0.6, 0.2, 0.3, 0.5, 0.2, 0.2])


@pytest.mark.parametrize(
    ("aggregation", "expected_scores", "expected_auroc"),
    [
        (StudyAggregation(how="max"), [0.6, 0.3, 0.5, 0.2], 0.75),
        (StudyAggregation(how="topk_mean", top_k=2), [0.35, 0.25, 0.35, 0.2], 0.625),
    ],
)
def test_study_auroc_on_a_hand_computed_case(aggregation, expected_scores, expected_auroc):
    names, study_labels, study_values = study_scores(PATIENTS, LABELS, SCORES, aggregation)
    assert list(names) == ["a", "b", "c", "d"] and study_labels.tolist() == [1, 1, 0, 0]
    assert study_values == pytest.approx(expected_scores)
    assert image_auroc(study_labels, study_values) == pytest.approx(expected_auroc)
    assert image_auroc(LABELS, SCORES) == pytest.approx(0.9)  # the slice-level number is another one
