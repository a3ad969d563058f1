"""kdmed review app: upload a study, score it with a trained model, review the flagged slices.

Run with `streamlit run app/main.py`. This file only renders: reading goes through `kdmed.io`, scoring
through `kdmed.inference` (the evaluate stage's code path).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from kdmed.checkpoint import list_checkpoints, load_checkpoint
from kdmed.errors import KdmedError
from kdmed.inference import score_study
from kdmed.io import load_study

MODELS_DIR = Path(os.environ.get("KDMED_MODELS_DIR", Path(__file__).resolve().parents[1] / "models"))

st.set_page_config(page_title="kdmed review", layout="wide")
st.title("kdmed: anomaly screening review")


@st.cache_resource(show_spinner="Loading model...")
def cached_checkpoint(path: str):
    return load_checkpoint(path)


def model_label(path: Path, meta: dict) -> str:
    auc = meta.get("calibration", {}).get("validation_specificity")
    return (
        f"{meta['dataset']} / {meta['method']} ({meta['architecture']['backbone']}), "
        f"trained {meta['training']['trained_at'][:10]}, val specificity {auc:.2f}"
    )


def overlay(view: np.ndarray, heat: np.ndarray, opacity: float, vmax: float) -> np.ndarray:
    """RGB uint8 image: the grey/RGB view blended with a red-yellow heat map."""
    base = view[0] if view.shape[0] == 1 else view.mean(axis=0)
    rgb = np.repeat(base[..., None], 3, axis=-1) if view.shape[0] == 1 else np.moveaxis(view, 0, -1)
    level = np.clip(heat / (vmax or 1.0), 0.0, 1.0)[..., None]
    colour = np.concatenate([np.ones_like(level), level, np.zeros_like(level)], axis=-1)
    alpha = opacity * level
    return (np.clip((1 - alpha) * rgb + alpha * colour, 0, 1) * 255).astype(np.uint8)


models = list_checkpoints(MODELS_DIR)
if not models:
    st.info(
        f"No trained model found under `{MODELS_DIR}`. Train the demo models with `make demo` "
        "(or `dvc repro`) from the repository root, then reload this page."
    )
    st.stop()

choice = st.sidebar.selectbox("Model", range(len(models)), format_func=lambda i: model_label(*models[i]))
path, meta = models[choice]
st.sidebar.caption(
    f"threshold {meta['calibration']['threshold']:.4g} "
    f"({meta['calibration']['rule']}, target specificity {meta['calibration']['target_specificity']})"
)

uploads = st.file_uploader(
    "Study: NIfTI (.nii/.nii.gz), DICOM files or a zip, or a 2D image", accept_multiple_files=True
)
if not uploads:
    st.stop()

try:
    study = load_study([(u.name, u.getvalue()) for u in uploads])
    checkpoint = cached_checkpoint(str(path))
    bar = st.progress(0.0, text="Scoring...")
    result = score_study(checkpoint, study, progress=lambda done, total: bar.progress(done / total))
    bar.empty()
except KdmedError as error:
    st.error(f"This upload cannot be scored: {error}")
    st.stop()

flagged = result.flagged_order
verdict = "FLAGGED for review" if result.study_flagged else "not flagged"
st.subheader(
    f"Study {verdict}: score {result.study_score:.4g} (threshold {result.threshold:.4g}), "
    f"{len(flagged)} of {len(result.scores)} slices flagged"
)
for warning in study.metadata.warnings:
    st.caption(f"Reader note: {warning}")

left, right = st.columns([1, 3])
with left:
    st.markdown("**Flagged slices** (most suspicious first)")
    options = flagged or [int(np.nanargmax(np.nan_to_num(result.scores, nan=-np.inf)))]
    picked = st.radio("Go to", options, format_func=lambda i: f"{result.names[i]}: {result.scores[i]:.4g}")
with right:
    index = st.slider("Slice", 0, len(result.views) - 1, int(picked)) if len(result.views) > 1 else 0
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.5)
    vmax = float(np.nanmax([m.max() for m in result.maps])) or 1.0
    st.image(
        overlay(result.views[index], result.maps[index], opacity, vmax),
        caption=f"{result.names[index]}: score {result.scores[index]:.4g}",
        width="stretch",
    )
    if len(result.scores) > 1:
        st.line_chart(
            {
                "score": np.nan_to_num(result.scores, nan=0.0),
                "threshold": np.full(len(result.scores), result.threshold),
            }
        )
