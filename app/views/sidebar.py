"""The page's inputs: the model picker (only the models that fit the upload, `kdmed.model_choice`) and its
card, the privacy switch, the uploader, the series picker, and what to do when no model is trained yet
or none fits the upload."""

from __future__ import annotations

from pathlib import Path

import streamlit as st


def how_to_train(models_dir: Path) -> None:
    st.info(
        f"No trained model found under `{models_dir}`. Train the demo models with `make demo` "
        "(or `dvc repro`) from the repository root, then reload this page."
    )
    st.markdown(
        "- `make demo` sets up the environment and runs the whole pipeline on the bundled demo data.\n"
        "- `dvc repro` re-runs only what changed; `dvc exp run -S methods.stpm.batch_size=16` tries a variant.\n"
        "- Models land in `models/<dataset>/<method>/model.safetensors`; set `KDMED_MODELS_DIR` to use another "
        "folder."
    )


def privacy() -> bool:
    """The sidebar's privacy switch (drawn on every run, before anything can stop the page, so that the
    reader's choice is kept): whether reports may name the patient."""
    with st.sidebar:
        include_phi = st.checkbox(
            "Include patient-identifying fields in reports",
            value=False,
            key="include_phi",
            help="Off by default: name, ID, birth date, institution and dates stay out of the CSV and PDF.",
        )
        st.caption("Uploads stay in this session's memory and are discarded when you close the page.")
    return include_phi


def waiting_for_upload(slot, count: int) -> None:
    slot.caption(f"{count} trained models. Upload a study: the models that fit it are offered here.")


def model_picker(slot, cards: list, choice):
    """In `slot` (a placeholder at the top of the sidebar): the models that fit the upload (`choice`, a
    `kdmed.model_choice.ModelChoice`), best first, and why one was preselected. The preselected model is
    chosen unless the reader chose another that also fits this upload (a choice made in
    `st.session_state["model"]`, a catalogue position, is kept). Returns the chosen catalogue entry, or None
    when none fits."""
    if choice.preselected is None:
        slot.caption(f"None of the {len(cards)} trained models fits this upload (see the table).")
        return None
    fitting = list(choice.fitting)
    held = st.session_state.get("model")
    if held not in fitting or held == st.session_state.get("model_preselected"):
        st.session_state["model"] = choice.preselected  # not the reader's choice, or it does not fit
    st.session_state["model_preselected"] = choice.preselected
    with slot.container():
        position = st.selectbox("Model", fitting, format_func=lambda k: cards[k].label, key="model")
        others = len(cards) - len(fitting)
        rest = f" {others} other trained model{'s do' if others > 1 else ' does'} not fit this upload."
        st.caption(f"{choice.why}." + (rest if others else ""))
        card = cards[position]
        with st.expander("About this model", expanded=False):
            st.table([{"": name, "value": value} for name, value in card.details().items()])
    return card


def no_model_fits(cards: list, choice) -> None:
    """Instead of a verdict: every model and why it does not fit the upload."""
    st.error(
        f"No trained model fits this upload, {choice.upload.describe()}: the table says why for each of the "
        f"{len(cards)}. Train a model on this kind of study, or upload a study one of them was trained for."
    )
    rows = zip(cards, choice.reasons, strict=True)
    st.table([{"model": card.label, "why it does not fit": reason} for card, reason in rows])


def uploader(max_upload_mb: int) -> list:
    how = st.radio("Upload", ["files or a zip", "a folder"], horizontal=True, key="upload_mode")
    return st.file_uploader(
        "Study: NIfTI (.nii, .nii.gz), DICOM files, a folder or a zip, or a 2D image (png, jpg, tif, bmp)",
        accept_multiple_files=True if how == "files or a zip" else "directory",
        key=f"uploads_{how}",
        max_upload_size=max_upload_mb,
    )


def series_label(info) -> str:
    parts = [
        info.description or "(no description)",
        info.modality or "?",
        f"{info.n_slices} slices",
        info.orientation or "no patient geometry",
    ]
    return " | ".join(parts) + (" | localiser" if info.is_localizer else "")


def series_picker(series: list, default_uid: str) -> str:
    """The series to review: the reader's choice when the upload holds several."""
    if len(series) <= 1:
        return default_uid
    uids = [info.uid for info in series]
    pick = st.selectbox(
        "This upload holds several series: choose one",
        range(len(series)),
        index=uids.index(default_uid) if default_uid in uids else 0,
        format_func=lambda i: series_label(series[i]),
        key="series",
    )
    return uids[pick]
