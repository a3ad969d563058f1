"""kdmed review app: upload a study, score it with a trained model, review the flagged slices, export a record.

Run with `streamlit run app/main.py`. This file only renders: reading goes through `kdmed.io`, scoring
through `kdmed.inference` (the evaluate stage's code path), drawing through `kdmed.display`, the model
catalogue, operating point and Captum explanations through `kdmed.review`, records through `kdmed.report`.

Privacy: uploads stay in this session's memory (never written to disk) and are gone when the session ends;
nothing about a study is logged; reports leave identifying DICOM fields out unless the reader opts in.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import streamlit as st

from kdmed.checkpoint import catalogue_signature, load_checkpoint
from kdmed.config import ATTRIBUTION_METHODS
from kdmed.contract import SCORED
from kdmed.display import (
    apply_window,
    display_map,
    display_slice,
    draw_outline,
    fit_map,
    heat_image,
    outline,
    overlay,
    to_rgb,
    window_presets,
)
from kdmed.errors import KdmedError
from kdmed.inference import score_study
from kdmed.io import ReadLimits, load_study
from kdmed.report import ReviewContext, pdf_report, scores_csv
from kdmed.review import explain_slice, model_catalogue, operating_threshold

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("KDMED_MODELS_DIR", ROOT / "models"))
REPORTS_DIR = Path(os.environ.get("KDMED_REPORTS_DIR", ROOT / "reports"))
MAX_UPLOAD_MB = int(os.environ.get("KDMED_MAX_UPLOAD_MB", "1024"))
LIMITS = ReadLimits(max_voxels=int(os.environ.get("KDMED_MAX_VOXELS", ReadLimits().max_voxels)))
DEFAULT_ATTRIBUTION = "saliency"  # fastest of the attributions that follow MKD's score (README: Localisation)

st.set_page_config(page_title="kdmed review", layout="wide")
st.title("kdmed: anomaly screening review")


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def _loaded_checkpoint(path: str, size: int, mtime_ns: int):
    return load_checkpoint(path)


def cached_checkpoint(path: str):
    """The model at `path`, loaded once per file version (a retrained file is loaded again)."""
    stat = os.stat(path)
    return _loaded_checkpoint(path, stat.st_size, stat.st_mtime_ns)


@st.cache_resource(show_spinner=False, max_entries=2)
def cached_catalogue(models_dir: str, reports_dir: str, signature: tuple):
    """Checkpoint headers are read again only when a model file changes (`signature`)."""
    return model_catalogue(models_dir, reports_dir)


def how_to_train() -> None:
    st.info(
        f"No trained model found under `{MODELS_DIR}`. Train the demo models with `make demo` "
        "(or `dvc repro`) from the repository root, then reload this page."
    )
    st.markdown(
        "- `make demo` sets up the environment and runs the whole pipeline on the bundled demo data.\n"
        "- `dvc repro` re-runs only what changed; `dvc exp run -S methods.stpm.batch_size=16` tries a variant.\n"
        "- Models land in `models/<dataset>/<method>/model.safetensors`; set `KDMED_MODELS_DIR` to use another "
        "folder."
    )


def upload_files(uploads) -> tuple[list[tuple[str, bytes]], str]:
    """The uploaded files and a key for them, copied out of the uploader once per upload (not on every
    rerun): the key is made of Streamlit's file ids, which change whenever a file is uploaded again."""
    key = hashlib.sha256("\0".join(f"{u.file_id}:{u.name}:{u.size}" for u in uploads).encode()).hexdigest()
    held = st.session_state.get("upload")
    if held is None or held[0] != key:
        held = (key, [(u.name, u.getvalue()) for u in uploads])
        st.session_state["upload"] = held
        st.session_state.pop("study", None)
        st.session_state.pop("scored", None)
    return held[1], key


def series_label(info) -> str:
    parts = [
        info.description or "(no description)",
        info.modality or "?",
        f"{info.n_slices} slices",
        info.orientation or "no patient geometry",
    ]
    return " | ".join(parts) + (" | localiser" if info.is_localizer else "")


def read_study(files: list[tuple[str, bytes]], key: str):
    """Read the upload once (series list included) and keep it apart from any model: switching models
    reuses it. With several series, the reader's choice reloads only that series."""
    held = st.session_state.get("study")
    if held is None or held[0] != key:
        study = load_study(files, limits=LIMITS)
        held = (key, {study.metadata.series_uid: study}, study.series, study.metadata.series_uid)
        st.session_state["study"] = held
    _, loaded, series, default_uid = held
    uid = default_uid
    if len(series) > 1:
        uids = [info.uid for info in series]
        pick = st.selectbox(
            "This upload holds several series: choose one",
            range(len(series)),
            index=uids.index(default_uid) if default_uid in uids else 0,
            format_func=lambda i: series_label(series[i]),
            key="series",
        )
        uid = uids[pick]
    if uid not in loaded:
        loaded.clear()  # one series in memory at a time
        loaded[uid] = load_study(files, series_uid=uid, limits=LIMITS)
    return loaded[uid]


def scored(study, key: str, model_path: str) -> dict:
    """Score once per (upload, series, model) and keep the result in this session's state only."""
    stat = os.stat(model_path)  # a retrained file at the same path scores again
    token = (key, study.metadata.series_uid, model_path, stat.st_size, stat.st_mtime_ns)
    held = st.session_state.get("scored")
    if held is None or held[0] != token:
        checkpoint = cached_checkpoint(model_path)
        bar = st.progress(0.0, text="Scoring slices...")
        result = score_study(
            checkpoint, study, progress=lambda done, total: bar.progress(done / total, text=f"{done}/{total}")
        )
        bar.empty()
        held = (token, {"result": result, "presets": window_presets(study, result.foreground)})
        st.session_state["scored"] = held
        st.session_state.pop("explanation", None)
    return held[1]


def read_and_score(files, key: str, model_path: str):
    try:
        study = read_study(files, key)
        return study, scored(study, key, model_path)
    except KdmedError as error:
        st.error(f"This upload cannot be scored: {error}")
    except MemoryError:
        st.error("This upload is too large to score in this session's memory; upload one series at a time.")
    except Exception as error:  # noqa: BLE001 - the app must keep working whatever the file holds
        st.error(
            f"This upload cannot be scored: an unexpected {type(error).__name__} while reading it. "
            "Check that it is one NIfTI file, one DICOM series (files, folder or zip) or a 2D image."
        )
    return None


# ------------------------------------------------------------------------------------------- the model

cards = cached_catalogue(str(MODELS_DIR), str(REPORTS_DIR), catalogue_signature(MODELS_DIR))
if not cards:
    how_to_train()
    st.stop()

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

# ------------------------------------------------------------------------------------------ the upload

how = st.radio("Upload", ["files or a zip", "a folder"], horizontal=True, key="upload_mode")
uploads = st.file_uploader(
    "Study: NIfTI (.nii, .nii.gz), DICOM files, a folder or a zip, or a 2D image (png, jpg, tif, bmp)",
    accept_multiple_files=True if how == "files or a zip" else "directory",
    key=f"uploads_{how}",
    max_upload_size=MAX_UPLOAD_MB,
)
if not uploads:
    st.stop()

files, key = upload_files(uploads)
loaded = read_and_score(files, key, str(card.path))
if loaded is None:
    st.stop()
study, bundle = loaded
result = bundle["result"]
checkpoint = cached_checkpoint(str(card.path))
calibration = checkpoint.serving.calibration

# ----------------------------------------------------------------------------------------- the verdict

level = st.slider(
    "Operating point (normalised score; 0.5 = the calibrated threshold, lower flags more)",
    0.05,
    0.95,
    0.5,
    0.05,
    key="operating_point",
)
threshold = operating_threshold(calibration, level)
flagged = result.flags_at(threshold)
calibrated_count = int(result.flagged.sum())
if result.count(SCORED) == 0:
    st.subheader(
        f"Study not scored: none of its {len(result.scores)} slices is inside what this model was trained on"
    )
else:
    verdict = "FLAGGED for review" if result.study_flagged_at(threshold) else "not flagged"
    st.subheader(
        f"Study {verdict}: score {result.study_score:.4g} (threshold {threshold:.4g}), "
        f"{int(flagged.sum())} of {result.count(SCORED)} {'scored slices' if result.geometry else 'images'} flagged"
    )
st.caption(f"Operating point: threshold {result.threshold:.4g}, {calibration.operating_point()}.")
unscored = len(result.scores) - result.count(SCORED)
if unscored:
    policy = checkpoint.serving.slice_policy
    st.caption(
        f"{unscored} of {len(result.scores)} slices were not scored: the model was trained and evaluated on "
        f"{policy.describe()}; the others are shown as not scored (outside the trained range, or too little "
        "tissue) and are never flagged."
    )
if level != 0.5:
    change = int(flagged.sum()) - calibrated_count
    st.caption(
        f"At the calibrated threshold {result.threshold:.4g}: {calibrated_count} slices flagged, study "
        f"{'flagged' if result.study_flagged else 'not flagged'}. This operating point flags "
        f"{abs(change)} {'more' if change >= 0 else 'fewer'}."
    )
for warning in study.metadata.warnings:
    st.caption(f"Reader note: {warning}")

# ------------------------------------------------------------------------------------------ the review

order = result.flagged_order(threshold)
count = len(result.scores)
if "slice" not in st.session_state or st.session_state.get("slice_for") != key:
    first = order[0] if order else int(np.nanargmax(np.nan_to_num(result.scores, nan=-np.inf)))
    st.session_state["slice"], st.session_state["slice_for"] = int(first), key


def jump() -> None:
    st.session_state["slice"] = int(st.session_state["flagged_pick"])


left, right = st.columns([1, 3])
with left:
    st.markdown("**Flagged slices**, most suspicious first")
    if order:
        st.radio(
            "Go to",
            order,
            format_func=lambda i: f"{result.names[i]}: {result.scores[i]:.4g}",
            key="flagged_pick",
            on_change=jump,
            index=None,
        )
    else:
        st.caption("No slice is above the threshold.")
    presets = bundle["presets"]
    preset = st.selectbox("Window / level", list(presets), key="window")
    mode = st.radio("Heat map", ["overlay", "side by side"], key="view_mode")
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
    show_outline = st.checkbox("Outline the flagged region", value=True, key="outline")
with right:
    index = st.slider("Slice", 0, count - 1, key="slice") if count > 1 else 0
    pixels = display_slice(study, result, index)
    display = apply_window(pixels, presets[preset])
    heat = display_map(result, index, pixels.shape[:2])
    scale_note = "study scale"
    explanation = st.session_state.get("explanation")
    if explanation is not None and explanation["slice"] == index:
        heat, scale_note = fit_map(explanation["map"], pixels.shape[:2]), explanation["scaling"]
    border = outline(heat) if show_outline and flagged[index] else None
    if result.status[index] == SCORED:
        verdict = "flagged" if flagged[index] else "not flagged"
        title = f"{result.names[index]}: score {result.scores[index]:.4g} ({verdict})"
    else:
        title = f"{result.names[index]}: not scored ({result.status[index]})"
    if mode == "overlay":
        image = overlay(display, heat, opacity)
        st.image(draw_outline(image, border) if border is not None else image, caption=title, width="stretch")
    else:
        a, b = st.columns(2)
        base = (to_rgb(display) * 255).astype(np.uint8)
        a.image(draw_outline(base, border) if border is not None else base, caption=title, width="stretch")
        b.image(heat_image(heat), caption=f"anomaly map ({scale_note})", width="stretch")
    if count > 1:
        st.line_chart(
            {"score": np.nan_to_num(result.scores, nan=0.0), "threshold": np.full(count, threshold)},
            x_label="slice",
            y_label="score",
        )
    if checkpoint.method == "mkd":
        with st.expander("Explain this slice with Captum (MKD)"):
            method = st.selectbox(
                "Attribution",
                ATTRIBUTION_METHODS,
                index=ATTRIBUTION_METHODS.index(DEFAULT_ATTRIBUTION),
                key="attribution",
            )
            if result.status[index] != SCORED:
                st.caption("This slice was not scored, so there is no score to explain.")
            elif st.button("Explain", key="explain"):
                with st.spinner(f"{method} attribution of this slice's score..."):
                    explained = explain_slice(checkpoint, result, index, method)
                st.session_state["explanation"] = {
                    "slice": index,
                    "map": explained.heat,
                    "scaling": explained.scaling,
                }
                st.rerun()

# ------------------------------------------------------------------------------------------ the record

context = ReviewContext(
    model=checkpoint.header,
    model_file=card.path.name,
    study={
        **study.metadata.to_dict(include_phi=include_phi),
        "shape": list(study.array.shape),
        "spacing": [round(float(s), 3) for s in study.spacing],
    },
    operating_threshold=threshold,
)
csv_bytes = scores_csv(result, context)
st.session_state["report_csv"] = csv_bytes
c1, c2 = st.columns(2)
c1.download_button("Download per-slice scores (CSV)", csv_bytes, "kdmed_scores.csv", "text/csv", key="csv")
record_for = (key, str(card.path), round(threshold, 12), include_phi, preset)
if c2.button("Prepare the PDF summary", key="prepare_pdf"):
    top = order[:6] or [int(np.nanargmax(np.nan_to_num(result.scores, nan=-np.inf)))]
    window = presets[preset]
    overlays = {}
    for i in top:
        pixels = display_slice(study, result, i)
        overlays[i] = overlay(apply_window(pixels, window), display_map(result, i, pixels.shape[:2]), 0.5)
    st.session_state["report_pdf"] = pdf_report(result, context, overlays)
    st.session_state["report_pdf_for"] = record_for
if st.session_state.get("report_pdf_for") == record_for:
    c2.download_button(
        "Download review summary (PDF)",
        st.session_state["report_pdf"],
        "kdmed_review.pdf",
        "application/pdf",
        key="pdf",
    )
