"""The PACS source of the review app: studies listed from a DICOMweb server, one retrieved into the same
review page as an upload, and the results sent back as DICOM SEG + Key Object Selection (`kdmed.pacs`).

The server is `KDMED_PACS_URL` (default http://127.0.0.1:8042/dicom-web, what `make pacs` starts), editable
on the page. The list shows no patient names or IDs. A retrieved study stays in this session's memory only.
"""

from __future__ import annotations

import io
import os

import streamlit as st

from kdmed.errors import KdmedError

DEFAULT_URL = "http://127.0.0.1:8042/dicom-web"


@st.cache_data(ttl=30, show_spinner="Asking the PACS for its studies...")
def studies(url: str) -> list[dict]:
    from kdmed.pacs.client import Pacs

    return [entry.to_dict() for entry in Pacs(url).studies()]


@st.cache_data(max_entries=2, show_spinner="Retrieving the study from the PACS...")
def study_files(url: str, study_uid: str) -> list[tuple[str, bytes]]:
    """The study's image series as (name, Part 10 bytes), what an upload of its files would give."""
    from kdmed.pacs.client import Pacs

    pacs, files = Pacs(url), []
    for entry in pacs.image_series(study_uid):
        for k, dataset in enumerate(pacs.retrieve(study_uid, entry.uid)):
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            files.append((f"{entry.uid}/{k:05d}.dcm", buffer.getvalue()))
    return files


def _label(entry: dict) -> str:
    return " | ".join(
        [entry.get("date") or "no date", entry.get("description") or "(no description)",
         "/".join(entry.get("modalities") or ["?"]), entry["study_uid"][-12:]]
    )  # fmt: skip


def pick() -> tuple[list[tuple[str, bytes]], str, str, str] | None:
    """The chosen study's files, a key for them, the URL and the StudyInstanceUID; None after saying why."""
    url = st.text_input("DICOMweb URL", value=os.environ.get("KDMED_PACS_URL", DEFAULT_URL), key="pacs_url")
    try:
        listed = studies(url)
    except KdmedError as error:
        st.error(f"PACS: {error}")
        return None
    if not listed:
        st.info(f"The PACS at {url} holds no studies yet.")
        return None
    choice = st.selectbox(
        "Study", range(len(listed)), format_func=lambda i: _label(listed[i]), key="pacs_study"
    )
    uid = listed[choice]["study_uid"]
    try:
        files = study_files(url, uid)
    except KdmedError as error:
        st.error(f"PACS: {error}")
        return None
    return files, f"pacs:{url}:{uid}", url, uid


def send_back(url: str, study_uid: str, model_path: str, series_uid: str | None) -> None:
    """A button that scores the study on the PACS through `kdmed pacs score` and stores SEG + KOS."""
    if not st.button("Send the results to the PACS (DICOM SEG + Key Object Selection)", key="pacs_send"):
        return
    from kdmed.pacs.score import score_study_on_pacs

    try:
        with st.spinner("Scoring and storing the results on the PACS..."):
            report = score_study_on_pacs(url, study_uid, model_path, series_uid=series_uid)
    except KdmedError as error:
        st.error(f"Nothing was stored: {error}")
        return
    stored = report["pacs"]
    st.success(f"Stored SEG series {stored['seg_series_uid']} and Key Object Selection "
               f"{stored['kos_series_uid']} in study {study_uid}.")  # fmt: skip
