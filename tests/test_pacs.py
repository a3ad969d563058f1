"""`kdmed pacs` against a real Orthanc: a series stored, scored, and its SEG + KOS stored back into the
study; the SEG read back by highdicom marks exactly the flagged slices of the `kdmed score` report; bad
PACS answers are one clear error and store nothing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time

import highdicom as hd
import numpy as np
import pydicom
import pytest
from fake_models import model_at_median
from pydicom.uid import generate_uid

from kdmed.cli import main
from kdmed.errors import KdmedError
from kdmed.io.synthetic import series_datasets, write_datasets
from kdmed.pacs import client as pacs_client
from kdmed.pacs.client import Pacs, PacsError
from kdmed.pacs.score import score_study_on_pacs
from kdmed.pacs.watch import watch

pytestmark = pytest.mark.slow


def _study(tmp_path, slices: int = 12):
    """A synthetic axial MR series (40 x 40, `slices` slices) with a bright blob on slices 5-7."""
    rng = np.random.default_rng(0)
    volume = (200 + rng.normal(0, 10, (slices, 40, 40))).astype(np.int16)
    volume[:, :4, :] = 0
    volume[5:8, 14:22, 12:20] += 400
    extra = {"FrameOfReferenceUID": generate_uid(), "PatientSex": "O", "StudyTime": "120000",
             "StudyID": "1", "AccessionNumber": "A1", "ReferringPhysicianName": "", "SeriesDate": "20240102"}  # fmt: skip
    return series_datasets(volume, pixel_spacing=(1.0, 1.0), slice_spacing=2.0, extra=extra)


@pytest.fixture(scope="module")
def stored(orthanc, tmp_path_factory):
    root = tmp_path_factory.mktemp("pacs")
    datasets = _study(root)
    write_datasets(root / "series", datasets)
    model = model_at_median(root / "models", "volume", root / "series")
    Pacs(orthanc.url).store(datasets)
    return orthanc, datasets, model


def test_list_shows_the_study_without_patient_names(stored, capsys):
    server, datasets, _ = stored
    assert main(["pacs", "list", "--url", server.url]) == 0
    studies = json.loads(capsys.readouterr().out)
    entry = next(s for s in studies if s["study_uid"] == datasets[0].StudyInstanceUID)
    assert entry["modalities"] == ["MR"] and "patient" not in entry
    assert "Synthetic^Patient" not in json.dumps(studies)
    assert main(["pacs", "list", "--url", server.url, "--phi"]) == 0
    assert "Synthetic^Patient" in capsys.readouterr().out


def _dciodvfy_errors_are_none(dataset, path) -> None:
    """dicom3tools' validator, when installed (`make pacs-server`): no 'Error' line for the object."""
    if shutil.which("dciodvfy") is None:
        return
    dataset.save_as(path, enforce_file_format=True)
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


def test_score_stores_a_seg_and_a_kos_that_match_the_report(stored, tmp_path):
    server, datasets, model = stored
    study = datasets[0].StudyInstanceUID
    report = score_study_on_pacs(server.url, study, model)
    flagged = sorted(e["instance_number"] for e in report["slices"] if e["flagged"])
    assert flagged, "the median threshold flags about half the slices"
    series = {e.modality: e for e in Pacs(server.url).series(study)}
    assert set(series) == {"MR", "SEG", "KO"}
    assert series["SEG"].uid == report["pacs"]["seg_series_uid"]
    (seg_dataset,) = Pacs(server.url).retrieve(study, series["SEG"].uid)
    seg = hd.seg.Segmentation.from_dataset(seg_dataset)
    by_uid = {ds.SOPInstanceUID: int(ds.InstanceNumber) for ds in datasets}
    marked = set()
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        if seg.pixel_array[frame].any():
            marked.add(by_uid[source])
    assert marked and marked <= set(flagged)
    assert marked == set(report["pacs"]["seg_frames_marked"])
    _dciodvfy_errors_are_none(seg_dataset, tmp_path / "seg.dcm")
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID"):
        assert getattr(seg_dataset, keyword) == getattr(datasets[0], keyword)
    assert seg_dataset.SeriesInstanceUID not in {ds.SeriesInstanceUID for ds in datasets}
    (kos,) = Pacs(server.url).retrieve(study, series["KO"].uid)
    selected = {
        ref.ReferencedSOPInstanceUID
        for item in kos.CurrentRequestedProcedureEvidenceSequence
        for series_item in item.ReferencedSeriesSequence
        for ref in series_item.ReferencedSOPSequence
    }
    assert {by_uid[uid] for uid in selected} == set(flagged)
    assert "threshold" in json.dumps(kos.to_json_dict())
    _dciodvfy_errors_are_none(kos, tmp_path / "kos.dcm")


def test_watch_scores_each_study_once_across_restarts(stored, tmp_path):
    server, datasets, model = stored
    state = tmp_path / "state.json"
    first = watch(server.url, model, state, once=True)
    assert first["scored_now"] >= 1
    again = watch(server.url, model, state, once=True)
    assert again["scored_now"] == 0 and again["failed_now"] == 0
    assert json.loads(state.read_text())[datasets[0].StudyInstanceUID]["status"] == "done"


def test_bad_answers_are_one_clear_error_and_store_nothing(stored, monkeypatch):
    server, datasets, model = stored
    study = datasets[0].StudyInstanceUID
    before = len(Pacs(server.url).series(study))
    with pytest.raises(PacsError, match="not found"):
        score_study_on_pacs(server.url, generate_uid(), model)
    with pytest.raises(PacsError, match="series .* is not in study"):
        score_study_on_pacs(server.url, study, model, series_uid=generate_uid())
    monkeypatch.setattr(pacs_client, "MAX_INSTANCES", 5)
    with pytest.raises(PacsError, match="more than the 5"):
        score_study_on_pacs(server.url, study, model)
    monkeypatch.undo()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(PacsError, match="cannot reach"):
        score_study_on_pacs(f"http://127.0.0.1:{closed}/dicom-web", study, model)
    assert len(Pacs(server.url).series(study)) == before


def test_a_server_that_never_answers_times_out(stored):
    _, datasets, model = stored
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    try:
        with pytest.raises(PacsError, match="did not answer .* within 1 s"):
            score_study_on_pacs(f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web",
                                datasets[0].StudyInstanceUID, model, timeout_s=1)  # fmt: skip
    finally:
        silent.close()


def test_a_study_without_images_is_refused(stored):
    server, datasets, model = stored
    sr_only = pydicom.Dataset()
    study = datasets[0]
    kos_like = [ds for ds in Pacs(server.url).series(study.StudyInstanceUID) if ds.modality == "KO"]
    assert kos_like  # written by the scoring test
    del sr_only
    # a study holding only kdmed's KO: copy it into a new study
    (kos,) = Pacs(server.url).retrieve(study.StudyInstanceUID, kos_like[0].uid)
    kos.StudyInstanceUID = generate_uid()
    kos.SeriesInstanceUID = generate_uid()
    kos.SOPInstanceUID = generate_uid()
    kos.file_meta.MediaStorageSOPInstanceUID = kos.SOPInstanceUID
    Pacs(server.url).store([kos])
    with pytest.raises(PacsError, match="no image series to score"):
        score_study_on_pacs(server.url, kos.StudyInstanceUID, model)


def test_make_pacs_starts_and_stops_orthanc_by_its_pid(orthanc, tmp_path):
    """What `make pacs` / `make pacs-stop` run: a second server in its own folder, gone after stop."""
    from kdmed.pacs.orthanc import free_port
    from kdmed.pacs.orthanc import main as orthanc_main

    port = free_port()
    assert orthanc_main(["start", "--dir", str(tmp_path), "--port", str(port)]) == 0
    pid = int((tmp_path / "orthanc.pid").read_text().split()[0])
    assert Pacs(f"http://127.0.0.1:{port}/dicom-web").studies() == []
    assert orthanc_main(["stop", "--dir", str(tmp_path)]) == 0
    assert not (tmp_path / "orthanc.pid").exists()
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def _orthanc_id(server, series_uid: str) -> str:
    import requests

    found = requests.post(f"{server.rest}/tools/lookup", data=series_uid, timeout=10).json()
    return next(item["ID"] for item in found if item["Type"] == "Series")


def test_series_deleted_mid_run_is_one_error_and_nothing_is_stored(stored, monkeypatch):
    """Between listing the series and retrieving them, the series is deleted from Orthanc (REST)."""
    import requests

    server, _, model = stored
    datasets = _study(None, slices=10)
    Pacs(server.url).store(datasets)
    study = datasets[0].StudyInstanceUID
    real_retrieve = Pacs.retrieve

    def delete_then_retrieve(self, study_uid, series_uid):
        requests.delete(
            f"{server.rest}/series/{_orthanc_id(server, series_uid)}", timeout=10
        ).raise_for_status()
        return real_retrieve(self, study_uid, series_uid)

    monkeypatch.setattr(Pacs, "retrieve", delete_then_retrieve)
    with pytest.raises(PacsError, match="not found|came back empty"):
        score_study_on_pacs(server.url, study, model)
    monkeypatch.undo()
    with pytest.raises(PacsError, match="not found"):
        Pacs(server.url).series(study)  # the study is gone, and nothing of kdmed's was stored into it


def test_server_stopped_mid_run_is_one_error_and_nothing_is_stored(stored, tmp_path, monkeypatch):
    """A second Orthanc, stopped by its PID after the first series is retrieved; restarted on the same
    storage, its study holds the source series only."""
    from kdmed.pacs.orthanc import start, stop

    _, _, model = stored
    server = start(tmp_path / "pacs")
    first, second = _study(None, slices=10), _study(None, slices=10)
    for ds in second:  # a second series of the same study
        ds.StudyInstanceUID = first[0].StudyInstanceUID
    Pacs(server.url).store(first + second)
    real_retrieve = Pacs.retrieve

    def retrieve_then_stop(self, study_uid, series_uid):
        instances = real_retrieve(self, study_uid, series_uid)
        stop(tmp_path / "pacs")
        return instances

    monkeypatch.setattr(Pacs, "retrieve", retrieve_then_stop)
    try:
        with pytest.raises(PacsError, match="cannot reach"):
            score_study_on_pacs(server.url, first[0].StudyInstanceUID, model)
    finally:
        monkeypatch.undo()
        stop(tmp_path / "pacs")
    again = start(tmp_path / "pacs", port=server.port)
    try:
        modalities = sorted(e.modality for e in Pacs(again.url).series(first[0].StudyInstanceUID))
        assert modalities == ["MR", "MR"]
    finally:
        stop(tmp_path / "pacs")


def test_the_app_reviews_a_pacs_study_and_sends_the_results_back(stored, monkeypatch, tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    server, datasets, model = stored
    models = tmp_path / "models"
    (models / "demo" / "stpm").mkdir(parents=True)
    (models / "demo" / "stpm" / "model.safetensors").write_bytes(Path(model).read_bytes())
    monkeypatch.setenv("KDMED_MODELS_DIR", str(models))
    monkeypatch.setenv("KDMED_REPORTS_DIR", str(tmp_path / "no-reports"))
    monkeypatch.setenv("KDMED_PACS_URL", server.url)
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=180)
    app.run()
    app.radio(key="source").set_value("PACS").run()
    assert not app.exception, [e.value for e in app.exception]
    study = datasets[0].StudyInstanceUID
    box = app.selectbox(key="pacs_study")
    index = next(i for i, label in enumerate(box.options) if study[-12:] in str(label))  # labels, no PHI
    box.set_value(index).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Synthetic^Patient" not in " ".join(str(s.value) for s in app.selectbox)
    assert app.subheader, "the verdict of the PACS study is shown"
    before = sorted(e.modality for e in Pacs(server.url).series(study))
    app.button(key="pacs_send").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Stored SEG series" in s.value for s in app.success), [e.value for e in app.error]
    after = sorted(e.modality for e in Pacs(server.url).series(study))
    assert after.count("SEG") == before.count("SEG") + 1


def test_a_negative_study_still_gets_its_answer_and_a_2d_image_is_refused(stored, tmp_path):
    from fake_models import write_checkpoint

    server, _, _ = stored
    datasets = _study(None, slices=10)
    Pacs(server.url).store(datasets)
    study = datasets[0].StudyInstanceUID
    never = write_checkpoint(tmp_path / "never.safetensors", "volume", threshold=1e9)
    report = score_study_on_pacs(server.url, study, never)
    assert report["n_flagged"] == 0 and report["pacs"]["seg_frames_marked"] == []
    series = {e.modality: e for e in Pacs(server.url).series(study)}
    (kos,) = Pacs(server.url).retrieve(study, series["KO"].uid)
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113002"  # For Referring Provider
    assert "no instance flagged" in json.dumps(kos.to_json_dict())
    flat = _study(None, slices=3)  # no patient geometry: 2D images, not a volume
    for ds in flat:
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
    Pacs(server.url).store(flat)
    with pytest.raises(KdmedError, match="scores 3D volumes, but this study is a 2D image"):
        score_study_on_pacs(server.url, flat[0].StudyInstanceUID, never)
    assert [e.modality for e in Pacs(server.url).series(flat[0].StudyInstanceUID)] == ["MR"]
