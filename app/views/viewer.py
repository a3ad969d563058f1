"""The review: the findings strip on top, then the view controls and every flagged slice on the left, and
on the right the window/level presets, the slice and finding buttons, the slice with its heat map (or its
Captum explanation when one is held for it), the patient directions at its edges, its position in mm, and
the score along the slices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from app import state
from app.views.explanation import explain_panel
from app.views.findings_strip import findings_strip
from app.views.navigation import go_to, navigation
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
    slice_mm,
    to_rgb,
    view_orientation,
)
from kdmed.findings import study_findings
from kdmed.orientation import draw_edge_letters


@dataclass(frozen=True)
class ViewControls:
    """How the reader wants the slice drawn."""

    preset: str
    window: Window
    mode: str
    opacity: float
    show_outline: bool


def review(study, result, presets: dict, threshold: float, token: tuple, model_path: str) -> ViewControls:
    """The findings strip, the flagged list and controls on the left, the slice on the right; returns the
    controls (the record uses the chosen window)."""
    order = result.flagged_order(threshold)
    findings = study_findings(result, threshold)
    count = len(result.scores)
    start_at_the_top(result, order, shown_for=token[:2])
    strip = st.container()
    left, right = st.columns([1, 3])
    with right:
        preset = window_picker(presets)
    with left:
        controls = flagged_list_and_controls(result, order, presets, preset)
    with right:
        if count > 1:
            navigation(findings, count)
        index = st.slider("Slice", 0, count - 1, key="slice") if count > 1 else 0
        flagged = result.flags_at(threshold)
        held = state.explanation(token, index, state.attribution_choice())
        slice_view(study, result, index, bool(flagged[index]), controls, held)
        if count > 1:
            score_chart(result, threshold)
        explain_panel(result, index, token, model_path)
    if result.geometry is not None:
        with strip:
            findings_strip(study, result, findings, controls.window)
    return controls


def start_at_the_top(result, order: list[int], shown_for: tuple) -> None:
    """Show the most suspicious slice (the top finding's peak) first whenever a new upload or series is
    shown: a slice chosen in another series may not exist in this one."""
    if "slice" not in st.session_state or st.session_state.get("slice_for") != shown_for:
        first = order[0] if order else int(np.nanargmax(np.nan_to_num(result.scores, nan=-np.inf)))
        st.session_state["slice"], st.session_state["slice_for"] = int(first), shown_for


def _jump() -> None:
    go_to(st.session_state["flagged_pick"])


def window_picker(presets: dict) -> str:
    """The window/level presets in plain sight, above the slice."""
    if st.session_state.get("window") not in presets:  # another study's presets (CT and MR differ)
        st.session_state.pop("window", None)
    return st.segmented_control(
        "Window / level", list(presets), default=next(iter(presets)), required=True, key="window"
    )


def flagged_list_and_controls(result, order: list[int], presets: dict, preset: str) -> ViewControls:
    with st.expander(f"All flagged slices ({len(order)})", expanded=False):
        if order:
            st.caption("Most suspicious first.")
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
    mode = st.radio("Heat map", ["overlay", "side by side"], key="view_mode")
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
    show_outline = st.checkbox("Outline the flagged region", value=True, key="outline")
    return ViewControls(preset, presets[preset], mode, opacity, show_outline)


def slice_caption(study, result, index: int, flagged: bool) -> str:
    """E.g. "slice 45 · z = 12.5 mm: score 0.31 (flagged)"."""
    where = slice_mm(study, result, index)
    name = f"{result.names[index]} · {where}" if where else result.names[index]
    if result.status[index] == SCORED:
        return f"{name}: score {result.scores[index]:.4g} ({'flagged' if flagged else 'not flagged'})"
    return f"{name}: not scored ({result.status[index]})"


def slice_view(study, result, index: int, flagged: bool, controls: ViewControls, held: dict | None) -> None:
    """Slice `index` in the chosen window with the study-scaled heat map, or with `held`, the Captum
    explanation made for this score, slice and attribution; the patient directions drawn at its edges."""
    pixels = display_slice(study, result, index)
    display = apply_window(pixels, controls.window)
    heat = display_map(result, index, pixels.shape[:2])
    scale_note = "study scale"
    if held is not None:
        heat, scale_note = fit_map(held["map"], pixels.shape[:2]), held["scaling"]
    border = outline(heat) if controls.show_outline and flagged else None
    letters = view_orientation(study, result)

    def shown(rgb: np.ndarray) -> np.ndarray:
        rgb = draw_outline(rgb, border) if border is not None else rgb
        return draw_edge_letters(rgb, letters) if letters is not None else rgb

    title = slice_caption(study, result, index, flagged)
    if controls.mode == "overlay":
        st.image(shown(overlay(display, heat, controls.opacity)), caption=title, width="stretch")
    else:
        a, b = st.columns(2)
        a.image(shown((to_rgb(display) * 255).astype(np.uint8)), caption=title, width="stretch")
        b.image(heat_image(heat), caption=f"anomaly map ({scale_note})", width="stretch")
    if letters is not None:
        st.caption(f"Patient directions at the edges ({letters.describe()}), from the study's affine.")
    else:
        st.caption("2D image: no patient orientation.")


def score_chart(result, threshold: float) -> None:
    count = len(result.scores)
    st.line_chart(
        {"score": np.nan_to_num(result.scores, nan=0.0), "threshold": np.full(count, threshold)},
        x_label="slice",
        y_label="score",
    )
