"""The findings strip: the top findings (`kdmed.findings`: runs of flagged slices ranked by peak score) as
thumbnails of their peak slices with the heat map, each with a button that shows that peak."""

from __future__ import annotations

import streamlit as st

from app.views.navigation import go_to
from kdmed.display import slice_overlay

STRIP_LENGTH = 6


def findings_strip(study, result, findings: list, window) -> None:
    """Up to `STRIP_LENGTH` findings, most suspicious first; says so when nothing is flagged."""
    st.markdown("**Findings**: runs of flagged slices, most suspicious first")
    if not findings:
        st.info("No finding: no slice is above the threshold.")
        return
    for k, (column, finding) in enumerate(
        zip(st.columns(STRIP_LENGTH), findings[:STRIP_LENGTH], strict=False)
    ):
        with column:
            st.image(slice_overlay(study, result, finding.peak, window), width="stretch")
            st.button(
                finding.describe(),
                key=f"finding_{k}",
                on_click=go_to,
                args=(finding.peak,),
                help=f"Show slice {finding.peak}, the peak of finding {k + 1}.",
                width="stretch",
                wrap=True,
            )
    if len(findings) > STRIP_LENGTH:
        st.caption(
            f"{len(findings) - STRIP_LENGTH} more findings, less suspicious: 'All flagged slices' lists every "
            "flagged slice, and the next/previous finding buttons visit them all."
        )
