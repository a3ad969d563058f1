"""The page's inputs: the model picker and its card, the privacy switch, the uploader, the series picker,
and what to do when no model is trained yet."""

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


def model_picker(cards: list) -> tuple:
    """The sidebar: the chosen catalogue entry and whether reports may name the patient."""
    with st.sidebar:
        choice = st.selectbox("Model", range(len(cards)), format_func=lambda i: cards[i].label, key="model")
        card = cards[choice]
        with st.expander("About this model", expanded=False):
            st.table([{"": name, "value": value} for name, value in card.details().items()])
        include_phi = st.checkbox(
            "Include patient-identifying fields in reports",
            value=False,
            key="include_phi",
            help="Off by default: name, ID, birth date, institution and dates stay out of the CSV and PDF.",
        )
        st.caption("Uploads stay in this session's memory and are discarded when you close the page.")
    return card, include_phi


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
