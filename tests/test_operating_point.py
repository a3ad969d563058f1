"""The operating point: a target-sensitivity threshold besides the target-specificity one, the fallback
when validation has no anomaly, its description for the reader, and the test split's sensitivity and
specificity at the stored threshold with patient-bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from kdmed import rules
from kdmed.calibration import calibrate
from kdmed.metrics.reported import operating_point_metrics


def test_the_sensitivity_threshold_flags_the_target_share_of_anomalies():
    anomalies = np.array([5.0, 10, 15, 18, 25, 30, 40, 50, 60, 70])
    t = rules.sensitivity_threshold(anomalies, 0.9)  # 9 of 10 must be above: just below 10
    assert rules.flag(anomalies, t).sum() == 9 and t == np.nextafter(10.0, 0) and t < 10.0
    assert rules.flag(anomalies, rules.sensitivity_threshold(anomalies, 1.0)).all()
    # 0.7 * 10 = 7 exactly (float noise must not round it up to 8): just below 18
    assert rules.sensitivity_threshold(anomalies, 0.7) == np.nextafter(18.0, 0)
    tied = np.array([1.0, 2.0, 2.0, 3.0])
    assert rules.flag(tied, rules.sensitivity_threshold(tied, 0.5)).sum() == 3  # ties are all flagged


def test_calibration_with_a_sensitivity_target_and_its_fallback():
    normals = np.arange(20.0)
    anomalies = np.array([5.0, 10, 15, 18, 25, 30, 40, 50, 60, 70])
    patients = np.array(["a"] * 10 + ["b"] * 10)
    c = calibrate(normals, anomalies, "sensitivity", 0.95, target_sensitivity=0.9, normal_patients=patients,
                  anomaly_patients=np.array(["c"] * 5 + ["d"] * 5))  # fmt: skip
    assert c.rule == "sensitivity" and c.validation_sensitivity == 0.9
    assert c.validation_specificity == pytest.approx(0.5)  # normals 0..9 at or below 9.99...
    assert c.validation_normal_patients == 2 and c.validation_anomaly_patients == 2
    text = c.operating_point()
    assert "target sensitivity 90 %" in text and "2 patient(s)" in text and "specificity 50.0 %" in text
    fallback = calibrate(normals, np.array([]), "sensitivity", 0.95)
    assert fallback.rule == "specificity" and fallback.target_sensitivity is None
    assert fallback.threshold == 18.0 and "target specificity 95 %" in fallback.operating_point()


def test_test_sensitivity_and_specificity_at_the_threshold_with_patient_intervals():
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(8)], 20)
    labels = np.tile(np.r_[np.zeros(10), np.ones(10)], 8).astype(int)
    scores = rng.normal(size=160) + 2.0 * labels
    out = operating_point_metrics(labels, scores, patients, threshold=1.0)
    assert out["test_sensitivity"] == pytest.approx(np.mean(scores[labels == 1] > 1.0))
    assert out["test_specificity"] == pytest.approx(np.mean(scores[labels == 0] <= 1.0))
    for name in ("test_sensitivity", "test_specificity"):
        assert out[f"{name}_ci_low"] <= out[name] <= out[f"{name}_ci_high"]
        assert out[f"{name}_ci_high"] - out[f"{name}_ci_low"] > 0.01
    few = operating_point_metrics(labels[:60], scores[:60], patients[:60], threshold=1.0)
    assert "test_sensitivity_ci_low" not in few  # 3 patients: no patient-level interval
