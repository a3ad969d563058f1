"""The review app's state: settings, what this session holds (upload, study, scores, explanation, records)
and the caches around them. The only module of the app that calls kdmed's reader, checkpoint, inference,
review and report functions; the views draw what it returns (through `kdmed.display`).

Everything a session holds lives in `st.session_state` under one key per item ("upload", "study",
"scored", "explanation", "report_csv", "report_pdf"), each stored with the token of what it was made
from, so that nothing made for one upload, series, model file or slice is ever shown for another.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

import kdmed.inference as inference  # looked up at call time, so a patched `score_study` is the one called
import kdmed.io as studies  # looked up at call time, so a patched `load_study` is the one called
from kdmed.checkpoint import catalogue_signature, load_checkpoint
from kdmed.display import slice_overlay, window_presets
from kdmed.errors import KdmedError
from kdmed.findings import study_findings
from kdmed.model_choice import ModelChoice, Upload, choose_models
from kdmed.report import MAX_PDF_SLICES, ReviewContext, pdf_report, scores_csv
from kdmed.review import explain_slice, model_catalogue, operating_threshold
from kdmed.runtimes import with_runtime

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ATTRIBUTION = "saliency"  # fastest of the attributions that follow MKD's score (README: Localisation)


@dataclass(frozen=True)
class Settings:
    """Where the models and their test reports are, and the upload limits (environment variables)."""

    models_dir: Path
    reports_dir: Path
    max_upload_mb: int
    limits: studies.ReadLimits


def settings() -> Settings:
    """Read on every run, not at import: Streamlit imports this module once per process."""
    return Settings(
        models_dir=Path(os.environ.get("KDMED_MODELS_DIR", ROOT / "models")),
        reports_dir=Path(os.environ.get("KDMED_REPORTS_DIR", ROOT / "reports")),
        max_upload_mb=int(os.environ.get("KDMED_MAX_UPLOAD_MB", "1024")),
        limits=studies.ReadLimits(
            max_voxels=int(os.environ.get("KDMED_MAX_VOXELS", studies.ReadLimits().max_voxels))
        ),
    )


# ------------------------------------------------------------------------------------------- models


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def _loaded_checkpoint(path: str, size: int, mtime_ns: int):
    # the evaluate stage's default runtime (BatchNorm folded on the CPU), so the app scores as it did
    return with_runtime(load_checkpoint(path), "torch", path)


def cached_checkpoint(path: str):
    """The model at `path`, loaded once per file version (a retrained file is loaded again)."""
    stat = os.stat(path)
    return _loaded_checkpoint(path, stat.st_size, stat.st_mtime_ns)


@st.cache_resource(show_spinner=False, max_entries=2)
def _cached_catalogue(models_dir: str, reports_dir: str, signature: tuple):
    return model_catalogue(models_dir, reports_dir)


def catalogue(where: Settings) -> list:
    """The trained models; checkpoint headers are read again only when a model file changes."""
    return _cached_catalogue(
        str(where.models_dir), str(where.reports_dir), catalogue_signature(where.models_dir)
    )


def model_choice(cards: list, study) -> ModelChoice:
    """The catalogue entries that fit the study under review, best first, and the one to preselect."""
    return choose_models([card.header for card in cards], Upload.of(study))


def threshold_at(checkpoint, level: float) -> float:
    """The raw-score threshold of the operating point the reader chose (0.5 = calibrated)."""
    return operating_threshold(checkpoint.serving.calibration, level)


# ------------------------------------------------------------------------------------ upload and study


def upload_files(uploads) -> tuple[list[tuple[str, bytes]], str]:
    """The uploaded files and a key for them, copied out of the uploader once per upload (not on every
    rerun): the key is made of Streamlit's file ids, which change whenever a file is uploaded again."""
    key = hashlib.sha256("\0".join(f"{u.file_id}:{u.name}:{u.size}" for u in uploads).encode()).hexdigest()
    return hold_files(key, lambda: [(u.name, u.getvalue()) for u in uploads])


def hold_files(key: str, read) -> tuple[list[tuple[str, bytes]], str]:
    """The files of the study under review (`read()` once per new `key`); a new study drops the old one's
    series, scores and explanation."""
    held = st.session_state.get("upload")
    if held is None or held[0] != key:
        held = (key, read())
        st.session_state["upload"] = held
        for stale in ("study", "scored", "explanation"):
            st.session_state.pop(stale, None)
    return held[1], key


def upload_series(files: list[tuple[str, bytes]], key: str, where: Settings) -> tuple[list, str]:
    """Read the upload once (series list included) and keep it apart from any model: switching models
    reuses it. Returns the series it holds and the one read by default."""
    held = st.session_state.get("study")
    if held is None or held[0] != key:
        study = studies.load_study(files, limits=where.limits)
        held = (key, {study.metadata.series_uid: study}, study.series, study.metadata.series_uid)
        st.session_state["study"] = held
    return held[2], held[3]


def series_study(files: list[tuple[str, bytes]], uid: str, where: Settings):
    """The chosen series of the upload held by `upload_series`; only one series is kept in memory."""
    loaded = st.session_state["study"][1]
    if uid not in loaded:
        loaded.clear()
        loaded[uid] = studies.load_study(files, series_uid=uid, limits=where.limits)
    return loaded[uid]


# ------------------------------------------------------------------------------------------- scoring


def scoring_token(study, key: str, model_path: str) -> tuple:
    """What a score is made from: upload, series and model file version (a retrained file scores again)."""
    stat = os.stat(model_path)
    return (key, study.metadata.series_uid, model_path, stat.st_size, stat.st_mtime_ns)


def scored(study, token: tuple, model_path: str) -> dict:
    """Score once per `scoring_token` and keep the result in this session's state only."""
    held = st.session_state.get("scored")
    if held is None or held[0] != token:
        checkpoint = cached_checkpoint(model_path)
        bar = st.progress(0.0, text="Scoring slices...")
        result = inference.score_study(
            checkpoint, study, progress=lambda done, total: bar.progress(done / total, text=f"{done}/{total}")
        )
        bar.empty()
        held = (token, {"result": result, "presets": window_presets(study, result.foreground)})
        st.session_state["scored"] = held
    return held[1]


def failure_message(error: BaseException, stage: str) -> str:
    """What the reader is told when an upload fails at `stage` ("reading" or "scoring"): a kdmed error
    says what was wrong in its own words (RD4AD's input size, a diverged model, a corrupt file); anything
    else is named as unexpected, with the stage it happened in."""
    if isinstance(error, KdmedError):
        return f"This upload cannot be scored: {error}"
    if isinstance(error, MemoryError):
        return "This upload is too large to score in this session's memory; upload one series at a time."
    return (
        f"This upload cannot be scored: an unexpected {type(error).__name__} while {stage} it. "
        "Check that it is one NIfTI file, one DICOM series (files, folder or zip) or a 2D image."
    )


# --------------------------------------------------------------------------------------- explanation


def attribution_choice() -> str:
    """The attribution the reader has chosen (the selector is drawn below the slice it explains)."""
    return st.session_state.get("attribution", DEFAULT_ATTRIBUTION)


def explanation(token: tuple, index: int, method: str) -> dict | None:
    """The held Captum explanation when it was made for this score (upload, series, model file), this
    slice and this attribution; None otherwise, so an explanation never outlives what it explains."""
    held = st.session_state.get("explanation")
    return held if held is not None and held["for"] == (token, index, method) else None


def explain(token: tuple, model_path: str, result, index: int, method: str) -> None:
    """Compute and hold the `method` attribution of slice `index`'s score (MKD only)."""
    explained = explain_slice(cached_checkpoint(model_path), result, index, method)
    st.session_state["explanation"] = {
        "for": (token, index, method),
        "slice": index,
        "method": method,
        "map": explained.heat,
        "scaling": explained.scaling,
    }


# -------------------------------------------------------------------------------------------- records


def review_context(checkpoint, model_path: Path, study, include_phi: bool, threshold: float):
    """What a record says besides the scores; identifying fields only if `include_phi`."""
    return ReviewContext(
        model=checkpoint.header,
        model_file=model_path.name,
        study={
            **study.metadata.to_dict(include_phi=include_phi),
            "shape": list(study.array.shape),
            "spacing": [round(float(s), 3) for s in study.spacing],
        },
        operating_threshold=threshold,
    )


def record_csv(result, context: ReviewContext) -> bytes:
    csv_bytes = scores_csv(result, context)
    st.session_state["report_csv"] = csv_bytes
    return csv_bytes


def prepare_pdf(study, result, context: ReviewContext, window, made_for: tuple) -> None:
    """The PDF record, picturing the peak slices of the findings at the reader's operating threshold
    (ranked; the highest-scoring slice when nothing flags), held with what it was `made_for` (see
    `pdf_for`). A 2D image is its own one picture."""
    findings = study_findings(result, context.operating_threshold)
    top = [f.peak for f in findings[:MAX_PDF_SLICES]]
    top = top or [int(np.nanargmax(np.nan_to_num(result.scores, nan=-np.inf)))]
    overlays = {i: slice_overlay(study, result, i, window) for i in top}
    st.session_state["report_pdf"] = pdf_report(result, context, overlays)
    st.session_state["report_pdf_for"] = made_for


def pdf_for(made_for: tuple) -> bytes | None:
    """The prepared PDF when it was made for the record now on screen, else None."""
    if st.session_state.get("report_pdf_for") == made_for:
        return st.session_state["report_pdf"]
    return None
