"""Moving through the study: previous/next slice and previous/next finding, as buttons with keyboard
shortcuts. Each button moves the slice slider (`st.session_state["slice"]`) in its callback, before the
page is drawn again; scoring is never redone (it is held by `app.state.scored`)."""

from __future__ import annotations

import streamlit as st

SHORTCUTS = {"previous_slice": "K", "next_slice": "J", "previous_finding": "P", "next_finding": "N"}


def go_to(position: int) -> None:
    """Show slice `position` (a callback: it runs before the slider is drawn again)."""
    st.session_state["slice"] = int(position)


def _step_slice(step: int, count: int) -> None:
    go_to(min(max(int(st.session_state.get("slice", 0)) + step, 0), count - 1))


def _step_finding(step: int, peaks: tuple[int, ...]) -> None:
    """To the nearest finding's peak further along (`step` 1) or back (-1) from the slice shown."""
    here = int(st.session_state.get("slice", 0))
    ahead = [p for p in peaks if p > here] if step > 0 else [p for p in peaks if p < here]
    if ahead:
        go_to(min(ahead) if step > 0 else max(ahead))


def navigation(findings: list, count: int) -> None:
    """Four buttons in a row; findings are visited in slice order, at their peaks."""
    here = int(st.session_state.get("slice", 0))
    peaks = tuple(sorted(f.peak for f in findings))
    none_before, none_after = not any(p < here for p in peaks), not any(p > here for p in peaks)
    buttons = (
        ("previous_finding", "◀ Previous finding", _step_finding, (-1, peaks), none_before),
        ("previous_slice", "◀ Previous slice", _step_slice, (-1, count), here <= 0),
        ("next_slice", "Next slice ▶", _step_slice, (1, count), here >= count - 1),
        ("next_finding", "Next finding ▶", _step_finding, (1, peaks), none_after),
    )
    for column, (key, label, step, args, at_the_end) in zip(st.columns(4), buttons, strict=True):
        column.button(
            label,
            key=key,
            on_click=step,
            args=args,
            disabled=at_the_end,
            shortcut=SHORTCUTS[key],
            help=f"Keyboard: {SHORTCUTS[key]}. Findings are visited in slice order, at their peak slice.",
            width="stretch",
        )
