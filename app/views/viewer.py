"""The review: the flagged list (most suspicious first), the view controls, the slice with its heat map
(or its Captum explanation when one is held for it) and the score along the slices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from app import state
from app.views.explanation import explain_panel
from kdmed.contract import SCORED
from kdmed.display import (
    Window,
    apply_window,
    display_map,
    display_slice,
    draw_outline,
    fit_map,
    heat_image,
    outline,
    overlay,
    to_rgb,
)


@dataclass(frozen=True)
class ViewControls:
    """How the reader wants the slice drawn."""

    preset: str
    window: Window
    mode: str
    opacity: float
    show_outline: bool


def review(study, result, presets: dict, threshold: float, token: tuple, model_path: str) -> ViewControls:
    """The flagged list and controls on the left, the slice on the right; returns the controls (the
    record uses the chosen window)."""
    order = result.flagged_order(threshold)
    start_at_the_top(result, order, shown_for=token[:2])
    left, right = st.columns([1, 3])
    with left:
        controls = flagged_list_and_controls(result, order, presets)
    with right:
        index = st.slider("Slice", 0, len(result.scores) - 1, key="slice") if len(result.scores) > 1 else 0
        flagged = result.flags_at(threshold)
        held = state.explanation(token, index, state.attribution_choice())
        slice_view(study, result, index, bool(flagged[index]), controls, held)
        if len(result.scores) > 1:
            score_chart(result, threshold)
        explain_panel(result, index, token, model_path)
    return controls


def start_at_the_top(result, order: list[int], shown_for: tuple) -> None:
    """Show the most suspicious slice first whenever a new upload or series is shown: a slice chosen in
    another series may not exist in this one."""
    if "slice" not in st.session_state or st.session_state.get("slice_for") != shown_for:
        first = order[0] if order else int(np.nanargmax(np.nan_to_num(result.scores, nan=-np.inf)))
        st.session_state["slice"], st.session_state["slice_for"] = int(first), shown_for


def _jump() -> None:
    st.session_state["slice"] = int(st.session_state["flagged_pick"])


def flagged_list_and_controls(result, order: list[int], presets: dict) -> ViewControls:
    st.markdown("**Flagged slices**, most suspicious first")
    if order:
        st.radio(
            "Go to",
            order,
            format_func=lambda i: f"{result.names[i]}: {result.scores[i]:.4g}",
            key="flagged_pick",
            on_change=_jump,
            index=None,
        )
    else:
        st.caption("No slice is above the threshold.")
    preset = st.selectbox("Window / level", list(presets), key="window")
    mode = st.radio("Heat map", ["overlay", "side by side"], key="view_mode")
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
    show_outline = st.checkbox("Outline the flagged region", value=True, key="outline")
    return ViewControls(preset, presets[preset], mode, opacity, show_outline)


def slice_view(study, result, index: int, flagged: bool, controls: ViewControls, held: dict | None) -> None:
    """Slice `index` in the chosen window with the study-scaled heat map, or with `held`, the Captum
    explanation made for this score, slice and attribution."""
    pixels = display_slice(study, result, index)
    display = apply_window(pixels, controls.window)
    heat = display_map(result, index, pixels.shape[:2])
    scale_note = "study scale"
    if held is not None:
        heat, scale_note = fit_map(held["map"], pixels.shape[:2]), held["scaling"]
    border = outline(heat) if controls.show_outline and flagged else None
    if result.status[index] == SCORED:
        title = f"{result.names[index]}: score {result.scores[index]:.4g} ({'flagged' if flagged else 'not flagged'})"
    else:
        title = f"{result.names[index]}: not scored ({result.status[index]})"
    if controls.mode == "overlay":
        image = overlay(display, heat, controls.opacity)
        st.image(draw_outline(image, border) if border is not None else image, caption=title, width="stretch")
    else:
        a, b = st.columns(2)
        base = (to_rgb(display) * 255).astype(np.uint8)
        a.image(draw_outline(base, border) if border is not None else base, caption=title, width="stretch")
        b.image(heat_image(heat), caption=f"anomaly map ({scale_note})", width="stretch")


def score_chart(result, threshold: float) -> None:
    count = len(result.scores)
    st.line_chart(
        {"score": np.nan_to_num(result.scores, nan=0.0), "threshold": np.full(count, threshold)},
        x_label="slice",
        y_label="score",
    )
