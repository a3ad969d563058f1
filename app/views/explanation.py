"""The on-demand Captum explanation of the slice on screen (MKD models only)."""

from __future__ import annotations

import streamlit as st

from app import state
from kdmed.config import ATTRIBUTION_METHODS
from kdmed.contract import SCORED


def explain_panel(result, index: int, token: tuple, model_path: str) -> None:
    """The attribution picker and the Explain button; the explanation is held for this score, slice and
    attribution (`state.explain`) and drawn by the slice view."""
    if state.cached_checkpoint(model_path).method != "mkd":
        return
    with st.expander("Explain this slice with Captum (MKD)"):
        method = st.selectbox(
            "Attribution",
            ATTRIBUTION_METHODS,
            index=ATTRIBUTION_METHODS.index(state.DEFAULT_ATTRIBUTION),
            key="attribution",
        )
        if result.status[index] != SCORED:
            st.caption("This slice was not scored, so there is no score to explain.")
        elif st.button("Explain", key="explain"):
            with st.spinner(f"{method} attribution of this slice's score..."):
                state.explain(token, model_path, result, index, method)
            st.rerun()
