"""The record: per-slice scores as CSV at once, the PDF summary on request."""

from __future__ import annotations

import streamlit as st

from app import state


def downloads(study, result, context, window, made_for: tuple) -> None:
    """The CSV download, and the PDF once prepared for exactly what is on screen (`made_for`: the score,
    operating threshold, privacy choice and window)."""
    c1, c2 = st.columns(2)
    c1.download_button(
        "Download per-slice scores (CSV)",
        state.record_csv(result, context),
        "kdmed_scores.csv",
        "text/csv",
        key="csv",
    )
    if c2.button("Prepare the PDF summary", key="prepare_pdf"):
        state.prepare_pdf(study, result, context, window, made_for)
    pdf = state.pdf_for(made_for)
    if pdf is not None:
        c2.download_button(
            "Download review summary (PDF)", pdf, "kdmed_review.pdf", "application/pdf", key="pdf"
        )
