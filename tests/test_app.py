"""The review app driven headlessly with Streamlit's AppTest: upload, score, review, export, bad uploads.

Models are random-init checkpoints (tests/fake_models.py); the flow, not the model, is under test. Where
counts matter, the test study is scored once outside the app (the oracle) and the threshold put between two
of its scores, so the app must show exactly the expected flags, in the expected order.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fake_models import nifti_bytes, write_checkpoint
from PIL import Image
from pypdf import PdfReader

from kdmed.checkpoint import load_checkpoint, read_header, save_checkpoint
from kdmed.findings import study_findings
from kdmed.inference import score_study
from kdmed.io import load_study
from kdmed.io.synthetic import PATIENT, series_datasets, write_datasets
from kdmed.ood import OodCheck
from kdmed.report import input_check
from kdmed.review import operating_threshold

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def start(monkeypatch, models: Path) -> AppTest:
    monkeypatch.setenv("KDMED_MODELS_DIR", str(models))
    monkeypatch.setenv("KDMED_REPORTS_DIR", str(models / "no-reports"))
    app = AppTest.from_file(APP, default_timeout=180)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def upload(app: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    app.file_uploader(key="uploads_files or a zip").set_value(
        [(n, d, "application/octet-stream") for n, d in files]
    )
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def slice_images(app: AppTest) -> list:
    """The slice on screen (and its heat map side by side): the captioned images, not the findings strip's
    thumbnails."""
    return [image for image in app.image if image.captions and image.captions[0]]


def flagged_count(app: AppTest) -> int:
    text = app.subheader[0].value
    return int(text.split("), ")[1].split(" of ")[0])


def test_without_models_the_app_explains_how_to_train(monkeypatch, tmp_path):
    app = start(monkeypatch, tmp_path)
    assert any("make demo" in info.value for info in app.info)
    assert any("dvc repro" in md.value for md in app.markdown)


def model_flagging(models: Path, top: int):
    """An STPM checkpoint whose threshold lies halfway between the `top`-th and the next highest score of
    the test study, and the study as scored outside the app (slice i at position i)."""
    path = models / "demo" / "stpm" / "model.safetensors"
    write_checkpoint(path, "volume")
    oracle = score_study(load_checkpoint(path), load_study([("study.nii", nifti_bytes())]))
    scores = oracle.scores
    ranked = np.sort(scores[np.isfinite(scores)])[::-1]
    assert ranked[top - 1] > ranked[top], "tied scores: choose another `top`"
    threshold = float(ranked[top - 1] + ranked[top]) / 2
    write_checkpoint(path, "volume", threshold=threshold, scale=float(np.std(ranked)))
    return path, oracle


def test_nifti_review_flow_from_upload_to_both_reports(monkeypatch, tmp_path):
    path, oracle = model_flagging(tmp_path, top=3)
    scores = oracle.scores
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert "slices flagged" in app.subheader[0].value
    assert flagged_count(app) == 3

    # the flagged list is ordered by score; choosing one moves the scrubber there
    pick = app.radio(key="flagged_pick")
    listed = [int(option.split(":")[0].split()[-1]) for option in pick.options]  # "slice 7: 0.123"
    assert listed == [int(i) for i in np.argsort(-np.nan_to_num(scores, nan=-np.inf))[:3]]
    least_suspicious = listed[-1]
    pick.set_value(least_suspicious).run()
    assert not app.exception
    assert app.slider(key="slice").value == least_suspicious
    # the caption names the slice and its position along z (the test volume's slices are 2 mm apart)
    assert (
        slice_images(app)[0]
        .captions[0]
        .startswith(f"slice {least_suspicious} · z = {2.0 * least_suspicious:.1f} mm:")
    )

    app.slider(key="opacity").set_value(0.9).run()
    app.radio(key="view_mode").set_value("side by side").run()
    assert len(slice_images(app)) == 2 and not app.exception

    app.slider(key="operating_point").set_value(0.2).run()  # more sensitive: lower threshold
    lower = operating_threshold(read_header(path).serving.calibration, 0.2)
    assert flagged_count(app) == int((np.nan_to_num(scores, nan=-np.inf) > lower).sum()) > 3
    assert any("calibrated threshold" in c.value for c in app.caption)

    rows = app.session_state["report_csv"].decode().strip().splitlines()
    assert rows[0].startswith("slice,name,status,score,normalized_score,flagged")
    assert len(rows) == 1 + 12 and sum(int(r.split(",")[5]) for r in rows[1:]) == flagged_count(app)
    assert len(app.get("download_button")) == 1  # the CSV only, until the PDF is prepared
    app.button(key="prepare_pdf").click().run()
    assert len(app.get("download_button")) == 2
    text = "".join(
        page.extract_text() for page in PdfReader(io.BytesIO(app.session_state["report_pdf"])).pages
    )
    verdict = "Study FLAGGED for review" if oracle.study_flagged_at(lower) else "Study not flagged"
    assert verdict in text and f"Operating threshold {lower:.4g}" in text
    assert "stpm / resnet18" in text and "Operating threshold" in text


def dicom_zip(series_dirs: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for folder in series_dirs:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()


@pytest.fixture
def dicom_upload(tmp_path) -> tuple[bytes, int, str]:
    """A zip of real DICOM series from ../shared/data when present (GE, four series), else of two
    synthetic series; with how many series it holds and a patient name it contains."""
    from conftest import shared_data_dir

    real = shared_data_dir() / "dicom" / "dcm_qa_nih" / "In" / "20180918GE"
    if real.is_dir():
        folders = sorted(p for p in real.iterdir() if p.is_dir())
        import pydicom

        name = str(pydicom.dcmread(next(folders[0].glob("*.dcm")), stop_before_pixels=True).PatientName)
        return dicom_zip(folders), len(folders), name
    folders = []
    rng = np.random.default_rng(0)
    for number in (1, 2):
        stored = np.zeros((8, 40, 40), np.int16)
        stored[:, 8:32, 6:34] = 100 + rng.normal(0, 5, (8, 24, 28)).astype(np.int16)
        folder = tmp_path / f"series{number}"
        write_datasets(folder, series_datasets(stored, series_number=number, description=f"series {number}"))
        folders.append(folder)
    return dicom_zip(folders), 2, str(PATIENT["PatientName"])


def test_dicom_zip_offers_its_series_and_keeps_names_out_of_reports_unless_asked(
    monkeypatch, tmp_path, dicom_upload
):
    archive, series_count, patient = dicom_upload
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    app = upload(start(monkeypatch, tmp_path), [("study.zip", archive)])
    picker = app.selectbox(key="series")
    assert len(picker.options) == series_count and all("slices" in o for o in picker.options)
    picker.set_value(len(picker.options) - 1).run()
    assert not app.exception and "slices flagged" in app.subheader[0].value

    def pdf_text() -> str:
        app.button(key="prepare_pdf").click().run()
        return "".join(p.extract_text() for p in PdfReader(io.BytesIO(app.session_state["report_pdf"])).pages)

    assert patient.split("^")[0] not in pdf_text()
    assert patient.split("^")[0] not in app.session_state["report_csv"].decode()
    app.checkbox(key="include_phi").check().run()
    assert patient.split("^")[0] in pdf_text()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("broken.nii.gz", b"\x1f\x8b\x08\x00garbage", "cannot be scored"),
        ("empty.dcm", b"", "cannot be scored"),
        ("notes.txt", b"just some text, not an image", "cannot be scored"),
    ],
)
def test_bad_uploads_show_a_message_and_the_app_keeps_working(monkeypatch, tmp_path, name, data, expected):
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    app = upload(start(monkeypatch, tmp_path), [(name, data)])
    assert app.error and expected in app.error[0].value
    upload(app, [("study.nii", nifti_bytes())])
    assert not app.error and "slices flagged" in app.subheader[0].value


def mpeg2_dicom_files() -> list[tuple[str, bytes]]:
    """Two DICOM slices in a transfer syntax no installed decoder reads (MPEG-2)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG2MPML

    from kdmed.io.synthetic import to_bytes

    files = []
    for k, ds in enumerate(series_datasets(np.zeros((2, 16, 16), np.int16))):
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.PixelData = encapsulate([b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        files.append((f"im{k}.dcm", to_bytes(ds)))
    return files


def test_unsupported_compression_names_the_syntax_and_the_fix(monkeypatch, tmp_path):
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    app = upload(start(monkeypatch, tmp_path), mpeg2_dicom_files())
    assert app.error and "MPEG2" in app.error[0].value and "gdcmconv" in app.error[0].value


def test_an_oversized_study_is_refused_before_decoding(monkeypatch, tmp_path):
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    monkeypatch.setenv("KDMED_MAX_VOXELS", "1000")  # the study has 40 x 40 x 12 voxels
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert app.error and "cannot be scored" in app.error[0].value and "voxels" in app.error[0].value


def test_a_2d_image_for_a_volume_model_is_refused_with_the_reason(monkeypatch, tmp_path):
    """No model fits: nothing is scored, and every model is listed with the reason it does not fit."""
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)).save(buffer, "PNG")
    app = upload(start(monkeypatch, tmp_path), [("scan.png", buffer.getvalue())])
    assert app.error and "No trained model fits this upload, a 2D grey image" in app.error[0].value
    (why,) = app.table[0].value["why it does not fit"]
    assert why.startswith("scores 3D volumes") and "the upload is a 2D grey image" in why
    assert not app.subheader and "scored" not in app.session_state


def test_a_2d_image_model_scores_an_oct_like_image(monkeypatch, tmp_path):
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "image")
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)).save(buffer, "PNG")
    app = upload(start(monkeypatch, tmp_path), [("scan.png", buffer.getvalue())])
    assert "of 1 images flagged" in app.subheader[0].value and app.image


def test_mkd_slices_can_be_explained_with_captum_on_demand(monkeypatch, tmp_path):
    write_checkpoint(tmp_path / "demo" / "mkd" / "model.safetensors", "volume", method="mkd")
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert app.selectbox(key="attribution").value == "saliency"
    app.selectbox(key="attribution").set_value("guided_backprop")
    app.button(key="explain").click().run()
    assert not app.exception, [e.value for e in app.exception]
    explanation = app.session_state["explanation"]
    assert explanation["slice"] == app.slider(key="slice").value
    result = app.session_state["scored"][1]["result"]
    assert explanation["map"].shape == result.maps[explanation["slice"]].shape
    assert explanation["scaling"].startswith("slice peak (option")  # guided backprop has no stored level


def test_the_study_is_read_once_and_kept_apart_from_the_model(monkeypatch, tmp_path):
    """A rerun or a model switch re-reads neither the upload nor the checkpoint headers; a switch rescores
    the study already in memory (what an explanation shows after a switch: the next test)."""
    import kdmed.checkpoint
    import kdmed.io

    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    write_checkpoint(tmp_path / "demo" / "mkd" / "model.safetensors", "volume", method="mkd")
    reads, headers = [], []
    real_load, real_header = kdmed.io.load_study, kdmed.checkpoint.read_header
    monkeypatch.setattr(kdmed.io, "load_study", lambda *a, **k: reads.append(1) or real_load(*a, **k))
    monkeypatch.setattr(kdmed.checkpoint, "read_header", lambda p: headers.append(p) or real_header(p))
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert len(reads) == 1 and len(headers) == 3  # two listed once, the chosen one loaded once
    app.slider(key="opacity").set_value(0.9).run()
    assert len(reads) == 1 and len(headers) == 3
    options = app.selectbox(key="model").options
    assert "/ mkd " in options[app.selectbox(key="model").value]  # same training date: path order
    app.button(key="explain").click().run()
    assert app.session_state["explanation"] is not None
    stpm = next(i for i, o in enumerate(options) if "/ stpm " in o)
    app.selectbox(key="model").set_value(stpm).run()
    assert not app.exception and len(reads) == 1 and len(headers) == 4  # the new model loaded once
    app.selectbox(key="model").set_value(1 - stpm).run()
    assert not app.exception and len(reads) == 1 and len(headers) == 4  # cached: neither re-read


def test_an_explanation_is_shown_only_with_the_model_slice_and_attribution_it_explains(monkeypatch, tmp_path):
    """Explain with model A, change the attribution, switch to model B and back, explain with B, upload
    another study: the heat map beside the slice is an explanation only where one was made for exactly
    that score (upload, series, model file), slice and attribution."""
    write_checkpoint(tmp_path / "demo" / "mkd" / "model.safetensors", "volume", method="mkd")
    write_checkpoint(
        tmp_path / "other" / "mkd" / "model.safetensors", "volume", method="mkd", dataset="other"
    )
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    app.radio(key="view_mode").set_value("side by side").run()
    served = "anomaly map (study scale)"

    def shown() -> str:
        assert not app.exception, [e.value for e in app.exception]
        return slice_images(app)[1].captions[0]

    def explain(method: str) -> None:
        app.selectbox(key="attribution").set_value(method)
        app.button(key="explain").click().run()

    a = app.selectbox(key="model").value
    assert shown() == served
    explain("guided_backprop")
    assert "guided_backprop" in shown()
    app.selectbox(key="attribution").set_value("smoothgrad").run()
    assert shown() == served  # the picker says smoothgrad: guided backprop's map is not shown as it
    app.selectbox(key="attribution").set_value("guided_backprop").run()
    assert "guided_backprop" in shown()  # A's own explanation of A's score
    app.selectbox(key="model").set_value(1 - a).run()
    assert shown() == served  # B: not A's explanation
    explain("guided_backprop")
    assert "guided_backprop" in shown()
    app.selectbox(key="model").set_value(a).run()
    assert shown() == served  # back on A: not B's explanation
    explain("guided_backprop")
    upload(app, [("study.nii", nifti_bytes(shape=(40, 40, 10)))])
    assert app.slider(key="slice").max == 9 and shown() == served  # another study (10 slices)


def dicom_series_zip(folder: Path, slices: tuple[int, ...]) -> bytes:
    """A zip of synthetic DICOM series with these slice counts."""
    rng = np.random.default_rng(0)
    folders = []
    for number, count in enumerate(slices, start=1):
        stored = np.zeros((count, 40, 40), np.int16)
        stored[:, 8:32, 6:34] = 100 + rng.normal(0, 5, (count, 24, 28)).astype(np.int16)
        series = folder / f"series{number}"
        write_datasets(series, series_datasets(stored, series_number=number, description=f"series {number}"))
        folders.append(series)
    return dicom_zip(folders)


def test_switching_series_starts_at_its_own_slices_and_drops_the_other_series_pdf(monkeypatch, tmp_path):
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume", slice_range=None)
    app = upload(start(monkeypatch, tmp_path), [("study.zip", dicom_series_zip(tmp_path, (10, 4)))])
    picker = app.selectbox(key="series")
    longer = next(i for i, o in enumerate(picker.options) if "10 slices" in o)
    picker.set_value(longer).run()
    app.slider(key="slice").set_value(9).run()
    app.button(key="prepare_pdf").click().run()
    assert len(app.get("download_button")) == 2
    app.selectbox(key="series").set_value(1 - longer).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "slices flagged" in app.subheader[0].value and 0 <= app.slider(key="slice").value <= 3
    assert len(app.get("download_button")) == 1  # the longer series' PDF is not offered for this one


def rd4ad_checkpoint(path: Path, image_size: int) -> Path:
    """A random ResNet-18 RD4AD checkpoint for inputs of `image_size` pixels (any size, even a wrong one)."""
    from kdmed.config import Rd4adConfig
    from kdmed.models.rd4ad import RD4AD

    header = read_header(write_checkpoint(path, "volume"))
    detector = RD4AD(Rd4adConfig(backbone="resnet18", weights="random"))
    serving = replace(
        header.serving, preprocessing=replace(header.serving.preprocessing, image_size=image_size)
    )
    card = replace(header.card, method="rd4ad")
    save_checkpoint(
        path, detector, replace(header, card=card, serving=serving, architecture=detector.architecture)
    )
    return path


def test_a_model_input_size_error_is_named_not_reported_as_unexpected(monkeypatch, tmp_path):
    rd4ad_checkpoint(tmp_path / "demo" / "rd4ad" / "model.safetensors", image_size=48)
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    message = app.error[0].value
    assert "multiples of 32" in message and "got 48x48" in message and "unexpected" not in message


def test_failure_messages_name_kdmed_errors_and_the_stage_of_anything_else(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(APP).parents[1]))
    from app.state import failure_message
    from kdmed.errors import InputSizeError, TrainingDivergedError

    diverged = failure_message(TrainingDivergedError("the loss is nan at step 3; lower the lr"), "scoring")
    assert diverged == "This upload cannot be scored: the loss is nan at step 3; lower the lr"
    assert "unexpected" not in failure_message(InputSizeError("sides of 48"), "scoring")
    assert "unexpected FloatingPointError while scoring it" in failure_message(
        FloatingPointError(), "scoring"
    )
    assert "unexpected ValueError while reading it" in failure_message(ValueError(), "reading")
    assert "too large" in failure_message(MemoryError(), "reading")


def test_slices_outside_the_trained_range_are_shown_as_such_and_never_flagged(monkeypatch, tmp_path):
    path = tmp_path / "demo" / "stpm" / "model.safetensors"
    write_checkpoint(path, "volume", threshold=-1.0, slice_range=(4, 8))  # every scored slice flags
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert "of 4 scored slices flagged" in app.subheader[0].value
    captions = [c.value for c in app.caption]
    assert any("8 of 12 slices were not scored" in c and "slices 4 to 7" in c for c in captions)
    assert any(
        c.startswith("Operating point: threshold -1") and "target specificity 95 %" in c for c in captions
    )
    app.slider(key="slice").set_value(10).run()
    assert (
        slice_images(app)[0].captions[0] == "slice 10 · z = 20.0 mm: not scored (outside the trained range)"
    )
    rows = app.session_state["report_csv"].decode().strip().splitlines()[1:]
    outside = [r for r in rows if "outside the trained range" in r]
    assert len(outside) == 8 and all(r.split(",")[5] == "0" for r in outside)
    write_checkpoint(path, "volume", slice_range=(20, 30))  # a model for other slices entirely
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert app.subheader[0].value.startswith("Study not scored: none of its 12 slices")


# ------------------------------------------------------------------------------ issue 18: the review page


def thumbnails(app: AppTest) -> list:
    return [image for image in app.image if not (image.captions and image.captions[0])]


def test_the_findings_strip_jumps_to_each_peak_and_every_flagged_slice_is_in_the_expander(
    monkeypatch, tmp_path
):
    path, oracle = model_flagging(tmp_path, top=3)
    expected = study_findings(oracle, read_header(path).serving.calibration.threshold)
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert expected and len(thumbnails(app)) == len(expected)
    assert [app.button(key=f"finding_{k}").label for k in range(len(expected))] == [
        f.describe() for f in expected
    ]
    for k, finding in enumerate(expected):
        app.slider(key="slice").set_value(0).run()  # away from every peak (slice 0 is outside the tissue)
        app.button(key=f"finding_{k}").click().run()
        assert not app.exception, [e.value for e in app.exception]
        assert app.slider(key="slice").value == finding.peak
        assert slice_images(app)[0].captions[0].startswith(f"slice {finding.peak} · z = ")

    (listing,) = [e for e in app.expander if e.label.startswith("All flagged slices")]
    assert listing.label == "All flagged slices (3)"
    assert [int(o.split(":")[0].split()[-1]) for o in listing.radio(key="flagged_pick").options] == (
        oracle.flagged_order(read_header(path).serving.calibration.threshold)
    )
    # the PDF record lists the same findings and pictures their peak slices
    app.button(key="prepare_pdf").click().run()
    pdf = " ".join(
        " ".join(
            p.extract_text() for p in PdfReader(io.BytesIO(app.session_state["report_pdf"])).pages
        ).split()
    )
    assert all(f"({k}) {f.describe()}" in pdf for k, f in enumerate(expected, start=1))
    assert all(f"finding {k}, peak slice {f.peak}:" in pdf for k, f in enumerate(expected, start=1))


def test_slice_and_finding_buttons_move_the_slider_and_nothing_is_scored_again(monkeypatch, tmp_path):
    """Moving between slices and findings, changing the window: the study is scored once."""
    import kdmed.inference

    path, oracle = model_flagging(tmp_path, top=3)
    peaks = sorted(f.peak for f in study_findings(oracle, read_header(path).serving.calibration.threshold))
    scorings, real = [], kdmed.inference.score_study
    monkeypatch.setattr(kdmed.inference, "score_study", lambda *a, **k: scorings.append(1) or real(*a, **k))
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert len(scorings) == 1
    assert (
        app.button(key="next_slice").proto.shortcut.upper() == "J"
        and "Keyboard: J" in app.button(key="next_slice").help
    )
    app.slider(key="slice").set_value(0).run()
    assert app.button(key="previous_slice").disabled and app.button(key="previous_finding").disabled
    app.button(key="next_slice").click().run()
    assert app.slider(key="slice").value == 1
    app.button(key="next_finding").click().run()
    assert app.slider(key="slice").value == peaks[0]
    for peak in peaks[1:]:
        app.button(key="next_finding").click().run()
        assert app.slider(key="slice").value == peak
    assert app.button(key="next_finding").disabled
    app.button(key="previous_slice").click().run()
    assert app.slider(key="slice").value == peaks[-1] - 1
    app.slider(key="slice").set_value(11).run()
    assert app.button(key="next_slice").disabled
    app.button(key="previous_finding").click().run()
    assert app.slider(key="slice").value == peaks[-1]
    window = app.button_group(key="window")
    window.set_value(window.options[-1]).run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(scorings) == 1  # none of this scored the study again


def test_nothing_flagged_is_said_in_the_strip(monkeypatch, tmp_path):
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume", threshold=1e9)
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert any(info.value.startswith("No finding") for info in app.info) and not thumbnails(app)
    assert app.expander[0].label == "All flagged slices (0)"
    assert app.button(key="next_finding").disabled and app.button(key="previous_finding").disabled


def test_orientation_is_named_for_volumes_and_absent_for_2d_images(monkeypatch, tmp_path):
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    write_checkpoint(tmp_path / "oct" / "stpm" / "model.safetensors", "image", dataset="oct")
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    assert any("left L · right R · top A · bottom P" in c.value for c in app.caption)
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)).save(buffer, "PNG")
    upload(app, [("scan.png", buffer.getvalue())])
    assert any(c.value == "2D image: no patient orientation." for c in app.caption)
    assert slice_images(app)[0].captions[0].startswith("image: score")


def test_the_picker_offers_only_models_that_fit_and_says_why_one_is_preselected(monkeypatch, tmp_path):
    def model(dataset: str, method: str, kind: str, day: int, channels: int = 1) -> None:
        write_checkpoint(tmp_path / dataset / method / "model.safetensors", kind, method=method, dataset=dataset,
                         channels=channels, trained_at=f"2026-11-{day:02d}T00:00:00+00:00")  # fmt: skip

    model("brain", "stpm", "volume", 20)
    model("brain", "mkd", "volume", 22)  # the newest brain model
    model("oct", "stpm", "image", 23)
    model("wbc", "stpm", "image", 24, channels=3)
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    picker = app.selectbox(key="model")
    assert (
        sorted(picker.options) == sorted(o for o in picker.options if o.startswith("brain /"))
        and len(picker.options) == 2
    )
    assert picker.options[picker.index].startswith("brain / mkd")
    why = next(c.value for c in app.caption if c.value.startswith("preselected"))
    assert why.startswith(
        "preselected brain/mkd: the upload is a 3D volume (no modality recorded) and this model was trained on "
        "3D MR volumes; newest of 2 that fit"
    ) and why.endswith("2 other trained models do not fit this upload.")
    assert "slices flagged" in app.subheader[0].value
    # the reader's own choice is kept for the next upload it fits
    scored_with = lambda: app.session_state["scored"][0][2]  # noqa: E731 - the scoring token's model file
    older = next(k for k, label in enumerate(picker.options) if label.startswith("brain / stpm"))
    app.selectbox(key="model").select_index(older).run()
    assert "brain/stpm/" in scored_with()
    upload(app, [("other.nii", nifti_bytes(shape=(40, 40, 10)))])
    assert "brain/stpm/" in scored_with() and app.slider(key="slice").max == 9

    grey = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)).save(grey, "PNG")
    upload(app, [("scan.png", grey.getvalue())])
    picker = app.selectbox(key="model")
    assert len(picker.options) == 1 and picker.options[0].startswith("oct / stpm")
    assert any("the only one of 4 that fits" in c.value for c in app.caption)
    assert "of 1 images flagged" in app.subheader[0].value and "oct/stpm/" in scored_with()
    upload(app, [("study.nii", nifti_bytes())])  # the oct model does not fit: the preselection again
    assert "brain/mkd/" in scored_with()


WARNED = OodCheck(
    available=True,
    warn=True,
    distance=9.0,
    threshold=3.0,
    reasons=("its image features lie 3.0x the calibrated limit away",),
    message="This study differs from the data this model was trained on: its image features lie 3.0x the "
    "calibrated limit away.",
)
RESEMBLES = OodCheck(available=True, warn=False, distance=1.234, threshold=3.0, message="resembles")
NOT_RUN = OodCheck(available=False, warn=False, message="The input check could not run: no profile here.")


@pytest.mark.parametrize(
    ("check", "shown"), [(WARNED, "warning"), (RESEMBLES, "caption"), (NOT_RUN, "caption")]
)
def test_the_input_check_is_shown_above_the_verdict_and_in_the_pdf(monkeypatch, tmp_path, check, shown):
    import kdmed.inference

    real = kdmed.inference.score_study
    monkeypatch.setattr(
        kdmed.inference, "score_study", lambda *a, **k: replace(real(*a, **k), out_of_distribution=check)
    )
    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    app = upload(start(monkeypatch, tmp_path), [("study.nii", nifti_bytes())])
    told, text = input_check(check)
    nodes = list(app.main)
    said = next(
        k
        for k, n in enumerate(nodes)
        if n.type in ("warning", "caption") and getattr(n, "value", None) == text
    )
    assert said < nodes.index(app.subheader[0])  # above the verdict
    if shown == "warning":
        assert app.warning[0].value == check.message
    else:
        assert not app.warning
        if check.available:
            assert (
                text
                == "Input check: this study resembles the model's training data (distance 1.23, threshold 3)."
            )
    app.button(key="prepare_pdf").click().run()
    pdf = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(app.session_state["report_pdf"])).pages)
    assert " ".join(text.split()[:6]) in " ".join(pdf.split())
    assert ("WARNING:" in pdf) == (told == "warn")
