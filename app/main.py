"""kdmed review app: upload a study, score it with a model that fits it, review the findings, export a record.

Run with `streamlit run app/main.py`. This file only wires the page together: `app.state` holds the
session's upload, study, scores and explanation and is the app's one caller of kdmed (reading through
`kdmed.io`, choosing models through `kdmed.model_choice`, scoring through `kdmed.inference`, the model
catalogue, operating point and Captum explanations through `kdmed.review`, records through `kdmed.report`);
`app.views` draw (through `kdmed.display`). The upload is read before a model is offered, so that only the
models that fit it are (a 3D MR volume is never scored by a model of 2D OCT scans).

Privacy: uploads stay in this session's memory (never written to disk) and are gone when the session ends;
nothing about a study is logged; reports leave identifying DICOM fields out unless the reader opts in.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import pacs_source, state  # noqa: E402
from app.views import record, sidebar, verdict, viewer  # noqa: E402


def read_upload(files: list[tuple[str, bytes]], key: str, where: state.Settings):
    """The chosen series of the upload, or None after telling the reader why it cannot be read."""
    try:
        series, default_uid = state.upload_series(files, key, where)
        return state.series_study(files, sidebar.series_picker(series, default_uid), where)
    except Exception as error:  # noqa: BLE001 - the app must keep working whatever the file holds
        st.error(state.failure_message(error, "reading"))
    return None


def score(study, key: str, model_path: str):
    """The study's scores with the chosen model and what they were made from, or None after saying why."""
    try:
        token = state.scoring_token(study, key, model_path)
        return token, state.scored(study, token, model_path)
    except Exception as error:  # noqa: BLE001 - the app must keep working whatever the file holds
        st.error(state.failure_message(error, "scoring"))
    return None


def source(where: state.Settings) -> tuple[list[tuple[str, bytes]], str, tuple | None]:
    """The files under review, their key and, for a PACS study, what sending results back needs; stops
    the page until there is something to read."""
    if st.radio("Source", ["upload", "PACS"], horizontal=True, key="source") == "PACS":
        pacs = pacs_source.pick()
        if pacs is None:
            st.stop()
        files, key = state.hold_files(pacs[1], lambda: pacs[0])
        return files, key, pacs
    uploads = sidebar.uploader(where.max_upload_mb)
    if not uploads:
        st.stop()
    files, key = state.upload_files(uploads)
    return files, key, None


def main() -> None:
    st.set_page_config(page_title="kdmed review", layout="wide")
    st.title("kdmed: anomaly screening review")
    where = state.settings()
    cards = state.catalogue(where)
    if not cards:
        sidebar.how_to_train(where.models_dir)
        st.stop()
    picker = st.sidebar.empty()  # the model picker sits above the privacy switch
    include_phi = sidebar.privacy()
    sidebar.waiting_for_upload(picker, len(cards))
    files, key, pacs = source(where)
    study = read_upload(files, key, where)
    if study is None:
        st.stop()
    choice = state.model_choice(cards, study)
    card = sidebar.model_picker(picker, cards, choice)
    if card is None:
        sidebar.no_model_fits(cards, choice)
        st.stop()
    model_path = str(card.path)
    scored = score(study, key, model_path)
    if scored is None:
        st.stop()
    token, bundle = scored
    result, checkpoint = bundle["result"], state.cached_checkpoint(model_path)

    level = verdict.operating_point()
    threshold = state.threshold_at(checkpoint, level)
    verdict.verdict(study, result, checkpoint, level, threshold)
    controls = viewer.review(study, result, bundle["presets"], threshold, token, model_path)

    context = state.review_context(checkpoint, card.path, study, include_phi, threshold)
    made_for = (token, round(threshold, 12), include_phi, controls.preset)
    record.downloads(study, result, context, controls.window, made_for)
    if pacs is not None:
        pacs_source.send_back(pacs[2], pacs[3], model_path, study.metadata.series_uid)


if __name__ == "__main__":
    main()
