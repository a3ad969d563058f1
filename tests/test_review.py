"""The app's computations outside Streamlit: model catalogue, operating point, window/level presets,
heat scaling, outlines, and the CSV / PDF records (identifying fields only on request)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from fake_models import model_at_median, nifti_bytes, write_checkpoint
from pypdf import PdfReader

from kdmed.calibration import normalized_score
from kdmed.checkpoint import load_checkpoint
from kdmed.contract import Calibration
from kdmed.display import Window, apply_window, display_map, display_slice, outline, overlay, window_presets
from kdmed.errors import ConfigError
from kdmed.findings import Finding, study_findings
from kdmed.inference import score_study
from kdmed.io import load_study
from kdmed.io.study import Study, StudyMetadata
from kdmed.ood import OodCheck
from kdmed.report import (
    MAX_LISTED_FINDINGS,
    MAX_PDF_SLICES,
    RECORD_STYLE,
    ReviewContext,
    findings_lines,
    input_check,
    pdf_report,
    record_figures,
    scores_csv,
)
from kdmed.review import explain_slice, model_catalogue, operating_threshold
from kdmed.rules import heat_scale


def test_the_operating_point_inverts_the_normalised_score():
    calibration = Calibration(
        rule="specificity", target_specificity=0.95, threshold=2.0, scale=0.3, map_floor=0.0
    )
    assert operating_threshold(calibration, 0.5) == pytest.approx(2.0)
    for level in (0.1, 0.3, 0.8):
        t = operating_threshold(calibration, level)
        assert normalized_score(np.array([t]), calibration)[0] == pytest.approx(level)
    assert operating_threshold(calibration, 0.2) < 2.0 < operating_threshold(calibration, 0.8)


def test_model_cards_show_training_and_test_metrics(tmp_path):
    write_checkpoint(tmp_path / "models" / "brain" / "stpm" / "model.safetensors", "volume", dataset="brain")
    report = tmp_path / "reports" / "brain" / "stpm" / "metrics.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"image_auroc": 0.93, "pixel_auroc": 0.97}))
    (card,) = model_catalogue(tmp_path / "models", tmp_path / "reports")
    details = card.details()
    assert card.label.startswith("brain / stpm (resnet18), trained 2026-11-22")
    assert details["test image AUROC"] == "93.0 %" and details["validation specificity"].startswith("95.0 %")
    assert model_catalogue(tmp_path / "nothing-here") == []


def _study(array, modality=None, window=None, volume=True) -> Study:
    meta = StudyMetadata(
        source_kind="dicom" if modality else "nifti",
        modality=modality,
        window_center=window[0] if window else None,
        window_width=window[1] if window else None,
        orientation=("R", "A", "S") if volume else None,
    )
    return Study(array=array, affine=np.eye(4), spacing=(1.0, 1.0, 1.0), metadata=meta)


def test_window_presets_follow_the_modality_and_the_file():
    ct = np.full((20, 20, 6), -1000.0, np.float32)
    ct[5:15, 5:15] = np.linspace(-100, 200, 600).reshape(10, 10, 6)
    presets = window_presets(_study(ct, modality="CT", window=(50.0, 350.0)))
    assert presets["CT soft tissue (W400 L40)"] == Window(40.0, 400.0)
    assert presets["brain (CT, W80 L40)"] == Window(40.0, 80.0)
    assert presets["as stored in the file"] == Window(50.0, 350.0)
    assert -100 <= presets["auto"].low < presets["auto"].high <= 200  # the foreground, not the air
    mr = window_presets(_study(np.abs(ct) / 10, modality="MR"))
    assert "CT soft tissue (W400 L40)" not in mr and "brain (MR, 0.5-99.5 %)" in mr
    shown = apply_window(np.array([[-200.0, 40.0, 400.0]]), Window(40.0, 400.0))
    np.testing.assert_allclose(shown, [[0.0, 0.5, 1.0]])


def test_one_heat_scale_per_study_with_the_normal_floor():
    maps = [np.zeros((4, 4)), np.full((4, 4), 0.2)]
    assert heat_scale(maps, 0.0) == pytest.approx(0.2)
    assert heat_scale(maps, floor=0.5) == pytest.approx(0.5)  # a faint study stays faint
    assert heat_scale([np.zeros((4, 4))], 0.0) == 1.0


def test_outline_is_the_border_of_the_hot_region():
    heat = np.zeros((9, 9))
    heat[2:7, 2:7] = 1.0
    border = outline(heat)
    assert border[2, 2:7].all() and border[2:7, 2].all() and not border[4, 4] and not border[0].any()
    rgb = overlay(np.zeros((9, 9)), heat, 1.0)
    assert rgb.dtype == np.uint8 and rgb[4, 4, 0] == 255 and rgb[0, 0].sum() == 0


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    path = model_at_median(root, "volume", [("s.nii", nifti_bytes())], map_floor=3.0)
    checkpoint = load_checkpoint(path)
    study = load_study([("s.nii", nifti_bytes())])
    return checkpoint, study, score_study(checkpoint, study)


def test_display_slices_keep_the_study_units_and_align_with_the_maps(scored):
    checkpoint, study, result = scored
    slices = [display_slice(study, result, i) for i in range(len(result.scores))]
    maps = [display_map(result, i, s.shape) for i, s in enumerate(slices)]
    assert len(slices) == len(result.scores) == study.array.shape[2]
    assert all(s.shape == m.shape for s, m in zip(slices, maps, strict=True))
    assert max(float(s.max()) for s in slices) > 150  # raw intensities (tissue ~100, blob +80), not [0, 1]
    # one scale for the study: its map peak, floored at the checkpoint's normal level
    peak = max(float(m.max()) for m in result.maps)
    assert result.heat_scale == pytest.approx(max(peak, 3.0))
    assert max(float(m.max()) for m in maps) == pytest.approx(peak / max(peak, 3.0), rel=1e-5)


def _context(checkpoint, study, threshold, include_phi=False) -> ReviewContext:
    meta = replace(study.metadata, phi={"PatientName": "Synthetic^Patient", "PatientID": "KDMED-0001"})
    return ReviewContext(
        model=checkpoint.header,
        model_file="model.safetensors",
        study={**meta.to_dict(include_phi=include_phi), "shape": list(study.array.shape)},
        operating_threshold=threshold,
    )


def test_csv_has_one_row_per_slice_at_the_operating_threshold(scored):
    checkpoint, study, result = scored
    lower = operating_threshold(checkpoint.serving.calibration, 0.2)
    rows = [
        r.split(",") for r in scores_csv(result, _context(checkpoint, study, lower)).decode().splitlines()
    ]
    assert len(rows) == 1 + len(result.scores)
    expected = [int(s > lower) for s in np.nan_to_num(result.scores, nan=-np.inf)]
    calibrated = [int(s > result.threshold) for s in np.nan_to_num(result.scores, nan=-np.inf)]
    assert expected != calibrated, "the test needs a slice between the two thresholds"
    assert [
        int(r[5]) for r in rows[1:]
    ] == expected  # flagged at the reader's threshold, not the calibrated one
    assert {(r[6], r[7]) for r in rows[1:]} == {(f"{lower:.6g}", f"{result.threshold:.6g}")}


def test_pdf_names_the_patient_only_when_asked(scored):
    checkpoint, study, result = scored

    def text(include_phi: bool) -> str:
        pdf = pdf_report(result, _context(checkpoint, study, result.threshold, include_phi), {})
        return "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)

    without, with_phi = text(False), text(True)
    assert "Study " in without and "Operating threshold" in without and "stpm / resnet18" in without
    assert "Synthetic" not in without and "KDMED-0001" not in without
    assert "Synthetic^Patient" in with_phi and "KDMED-0001" in with_phi


IDENTIFYING = {
    "PatientName": "Synthetic^Patient",
    "PatientID": "KDMED-0001",
    "PatientBirthDate": "19700101",
    "InstitutionName": "Example University Hospital, Department of Diagnostic and Interventional Neuroradiology",
    "InstitutionAddress": "1 Long Example Road, Building 7, Floor 3, Example City, Example Region, Example Country",
    "ReferringPhysicianName": "Example^Referrer^Middle^Dr.",
    "StudyDate": "20261122",
    "SeriesDate": "20261122",
    "AcquisitionDate": "20261122",
    "AccessionNumber": "ACC-2026-000123456789",
}


@pytest.mark.parametrize("fields", range(len(IDENTIFYING) + 1))
def test_the_record_text_never_runs_into_the_chart_or_the_slices(scored, fields):
    """However many identifying fields the reader includes (0 to 10, two of them long enough to wrap), no
    text of the record overlaps the chart or a slice, nothing leaves the page, and every field is in the
    PDF; the chart and slices move down, onto a second page when they must."""
    checkpoint, study, result = scored
    phi = dict(list(IDENTIFYING.items())[:fields])
    meta = replace(study.metadata, phi=phi)
    context = ReviewContext(
        model=checkpoint.header,
        model_file="model.safetensors",
        study={**meta.to_dict(include_phi=True), "shape": list(study.array.shape)},
        operating_threshold=result.threshold,
    )
    overlays = {i: np.zeros((32, 32, 3), np.uint8) for i in range(6)}
    with plt.rc_context(RECORD_STYLE):
        figures = record_figures(result, context, overlays)
    assert len(figures) == 1 if fields <= 2 else len(figures) <= 2  # the usual record keeps to one page
    assert sum(len(f.axes) for f in figures) == 1 + 6  # the chart and every slice, on some page
    for figure in figures:
        renderer = figure.canvas.get_renderer()
        texts = [t.get_window_extent(renderer) for t in figure.texts]
        axes = [a.get_tightbbox(renderer) for a in figure.axes]
        page = figure.bbox
        for box in texts + axes:
            assert page.x0 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 <= box.y0 and box.y1 <= page.y1
        for k, text in enumerate(texts):
            assert not any(text.overlaps(box) for box in axes), figure.texts[k].get_text()
            assert not any(text.overlaps(other) for other in texts[k + 1 :]), figure.texts[k].get_text()
        plt.close(figure)
    pdf = pdf_report(result, context, overlays)
    words = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split()
    for value in phi.values():
        assert all(word in words for word in value.split()), value


def test_captum_explanations_are_for_mkd_only(scored):
    checkpoint, _, result = scored
    with pytest.raises(ConfigError, match="attribute MKD's score"):
        explain_slice(checkpoint, result, 0, "saliency")


def test_an_explanation_attributes_exactly_the_scored_input(tmp_path):
    """The served MKD map (saliency) and the on-demand saliency explanation of the same slice agree: the
    explanation runs on the uint8 model input that was scored, not on a re-derived one."""
    path = write_checkpoint(tmp_path / "mkd.safetensors", "volume", method="mkd", map_floor=0.0)
    checkpoint = load_checkpoint(path)
    result = score_study(checkpoint, load_study([("s.nii", nifti_bytes())]))
    i = int(np.nanargmax(result.scores))
    explained = explain_slice(checkpoint, result, i, "saliency")
    assert explained.scaling.startswith("study scale")
    np.testing.assert_allclose(explained.heat * explained.scale, result.maps[i], rtol=1e-3, atol=1e-6)
    unscored = [k for k, status in enumerate(result.status) if status != "scored"]
    with pytest.raises(Exception, match="was not scored"):
        explain_slice(checkpoint, result, unscored[0], "saliency")


def _pdf_words(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def test_the_record_lists_the_findings_pictures_their_peaks_and_states_the_input_check(scored):
    """The findings (kdmed.findings, at the reader's threshold) are listed ranked and their peak slices
    pictured; the out-of-distribution check is stated, as a warning under the verdict when it warns."""
    checkpoint, study, result = scored
    context = _context(checkpoint, study, result.threshold)
    findings = study_findings(result, result.threshold)
    assert findings, "the test needs a flagged slice"
    overlays = {f.peak: np.zeros((32, 32, 3), np.uint8) for f in findings[:MAX_PDF_SLICES]}
    with plt.rc_context(RECORD_STYLE):
        figures = record_figures(result, context, overlays)
    titles = [axis.get_title() for figure in figures for axis in figure.axes if axis.get_title()]
    assert [t.split(":")[0] for t in titles] == [
        f"finding {k}, peak slice {f.peak}" for k, f in enumerate(findings[:MAX_PDF_SLICES], start=1)
    ]
    for figure in figures:
        plt.close(figure)
    words = _pdf_words(pdf_report(result, context, overlays))
    assert f"Findings: {len(findings)} run" in words
    for k, finding in enumerate(findings, start=1):
        assert f"({k}) {finding.describe()}" in words
    told, text = input_check(result.out_of_distribution)
    assert told == "not run" and " ".join(text.split()) in words  # the test model has no input profile

    warned = OodCheck(available=True, warn=True, distance=9.0, threshold=3.0, reasons=("far",),
                      message="This study differs from the data this model was trained on: far.")  # fmt: skip
    words = _pdf_words(pdf_report(replace(result, out_of_distribution=warned), context, overlays))
    assert "WARNING: This study differs from the data this model was trained on: far." in words
    assert words.index("WARNING") < words.index("Study score")  # right under the verdict


def test_the_findings_section_counts_what_it_does_not_list():
    many = [Finding(first=3 * k, last=3 * k, peak=3 * k, peak_score=100.0 - k, n_slices=1) for k in range(15)]
    (line,) = findings_lines(many, is_volume=True)
    assert line.startswith("Findings: 15 runs of flagged slices, ranked by peak score")
    assert f"({MAX_LISTED_FINDINGS}) {many[MAX_LISTED_FINDINGS - 1].describe()}; and 3 more" in line
    assert findings_lines([], is_volume=True) == [
        "Findings: none (no slice is above the operating threshold)."
    ]
    assert findings_lines(many, is_volume=False) == []  # a 2D image has no slices to group
