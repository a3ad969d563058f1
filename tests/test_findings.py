"""Flagged slices grouped into findings (kdmed.findings) and reported by `kdmed score`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_models import model_at_median, nifti_bytes

from kdmed.findings import Finding, group_findings
from kdmed.score import score_source

NAN = math.nan


def test_runs_are_grouped_and_ranked_by_peak():
    slices = list(range(10, 22))
    scores = [1, 5, 6, 2, 1, 9, 8, NAN, 7, 1, 3, 4]
    flagged = [False, True, True, False, False, True, True, True, True, False, True, True]
    found = group_findings(slices, scores, flagged)
    assert found == [
        Finding(first=15, last=16, peak=15, peak_score=9.0, n_slices=2),  # 17 is unscored: the run breaks
        Finding(first=18, last=18, peak=18, peak_score=7.0, n_slices=1),
        Finding(first=11, last=12, peak=12, peak_score=6.0, n_slices=2),
        Finding(first=20, last=21, peak=21, peak_score=4.0, n_slices=2),
    ]
    assert found[0].describe() == "slices 15-16, peak 9 at slice 15"
    assert found[1].describe() == "slice 18, peak 7 at slice 18"


def test_gaps_in_slice_numbers_break_runs_and_bad_input_is_refused():
    assert [f.first for f in group_findings([3, 4, 6], [1, 2, 3], [True, True, True])] == [6, 3]
    assert group_findings([], [], []) == []
    with pytest.raises(ValueError, match="one of each"):
        group_findings([1, 2], [1.0], [True, True])
    with pytest.raises(ValueError, match="strictly increasing"):
        group_findings([2, 1], [1.0, 2.0], [True, True])


def test_kdmed_score_reports_findings_that_cover_exactly_the_flagged_slices(tmp_path):
    study = tmp_path / "study.nii"
    study.write_bytes(nifti_bytes())
    model = model_at_median(tmp_path / "models", "volume", study)
    report = score_source(study, model)
    flagged = sorted(e["input_index"] for e in report["slices"] if e["flagged"])
    covered = sorted(i for f in report["findings"] for i in range(f["first"], f["last"] + 1))
    assert flagged and covered == flagged
    peaks = [f["peak_score"] for f in report["findings"]]
    assert peaks == sorted(peaks, reverse=True)
    by_index = {e["input_index"]: e["score"] for e in report["slices"]}
    for finding in report["findings"]:
        assert np.isclose(by_index[finding["peak"]], finding["peak_score"])
        assert finding["summary"].startswith("slice")
