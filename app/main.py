"""kdmed review app: upload a study, score it with a trained model, review the flagged slices, export a record.

Run with `streamlit run app/main.py`. This file only wires the page together: `app.state` holds the
session's upload, study, scores and explanation and is the app's one caller of kdmed (reading through
`kdmed.io`, scoring through `kdmed.inference`, the model catalogue, operating point and Captum explanations
through `kdmed.review`, records through `kdmed.report`); `app.views` draw (through `kdmed.display`).

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


def read_and_score(files: list[tuple[str, bytes]], key: str, model_path: str, where: state.Settings):
    """The chosen series of the upload and its scores, or None after telling the reader why not."""
    stage = "reading"
    try:
        series, default_uid = state.upload_series(files, key, where)
        study = state.series_study(files, sidebar.series_picker(series, default_uid), where)
        stage = "scoring"
        token = state.scoring_token(study, key, model_path)
        return study, token, state.scored(study, token, model_path)
    except Exception as error:  # noqa: BLE001 - the app must keep working whatever the file holds
        st.error(state.failure_message(error, stage))
    return None


def main() -> None:
    st.set_page_config(page_title="kdmed review", layout="wide")
    st.title("kdmed: anomaly screening review")
    where = state.settings()
    cards = state.catalogue(where)
    if not cards:
        sidebar.how_to_train(where.models_dir)
        st.stop()
    card, include_phi = sidebar.model_picker(cards)
    pacs = None
    if st.radio("Source", ["upload", "PACS"], horizontal=True, key="source") == "PACS":
        pacs = pacs_source.pick()
        if pacs is None:
            st.stop()
        files, key = state.hold_files(pacs[1], lambda: pacs[0])
    else:
        uploads = sidebar.uploader(where.max_upload_mb)
        if not uploads:
            st.stop()
        files, key = state.upload_files(uploads)
    model_path = str(card.path)
    loaded = read_and_score(files, key, model_path, where)
    if loaded is None:
        st.stop()
    study, token, bundle = loaded
    result, checkpoint = bundle["result"], state.cached_checkpoint(model_path)

    level = verdict.operating_point()
    threshold = state.threshold_at(checkpoint, level)
    verdict.verdict(study, result, checkpoint, level, threshold)
    controls = viewer.review(study, result, bundle["presets"], threshold, token, model_path)

    context = state.review_context(checkpoint, card.path, study, include_phi, threshold)
    made_for = (token, round(threshold, 12), include_phi, controls.preset)
    record.downloads(study, result, context, result.flagged_order(threshold), controls.window, made_for)
    if pacs is not None:
        pacs_source.send_back(pacs[2], pacs[3], model_path, study.metadata.series_uid)


if __name__ == "__main__":
    main()
