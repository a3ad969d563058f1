"""The verdict: the out-of-distribution check above it, the operating point the reader moves, the study's
verdict at it, and what was not scored."""

from __future__ import annotations

import streamlit as st

from kdmed.contract import SCORED
from kdmed.report import input_check


def operating_point() -> float:
    """The normalised operating point (0.5 = the calibrated threshold)."""
    return st.slider(
        "Operating point (normalised score; 0.5 = the calibrated threshold, lower flags more)",
        0.05,
        0.95,
        0.5,
        0.05,
        key="operating_point",
    )


def input_check_notice(result) -> None:
    """The out-of-distribution check (`kdmed.ood`): a warning above the verdict when the study lies
    outside what the model was trained on, else a caption saying it resembles it or why the check did
    not run (the same sentences as the PDF record)."""
    told, text = input_check(result.out_of_distribution)
    if told == "warn":
        st.warning(text, icon="⚠️")
    else:
        st.caption(text)


def verdict(study, result, checkpoint, level: float, threshold: float) -> None:
    """The study's verdict at `threshold`, how it compares with the calibrated one, and the reader notes."""
    calibration = checkpoint.serving.calibration
    flagged = result.flags_at(threshold)
    input_check_notice(result)
    if result.count(SCORED) == 0:
        st.subheader(
            f"Study not scored: none of its {len(result.scores)} slices is inside what this model was trained on"
        )
    else:
        says = "FLAGGED for review" if result.study_flagged_at(threshold) else "not flagged"
        st.subheader(
            f"Study {says}: score {result.study_score:.4g} (threshold {threshold:.4g}), "
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
        calibrated_count = int(result.flagged.sum())
        change = int(flagged.sum()) - calibrated_count
        st.caption(
            f"At the calibrated threshold {result.threshold:.4g}: {calibrated_count} slices flagged, study "
            f"{'flagged' if result.study_flagged else 'not flagged'}. This operating point flags "
            f"{abs(change)} {'more' if change >= 0 else 'fewer'}."
        )
    for warning in study.metadata.warnings:
        st.caption(f"Reader note: {warning}")
