"""Flagged slices grouped into findings: contiguous runs, ranked by their peak score.

A reader takes in "slices 38-52, peak at 45" where a list of 15 flagged slice numbers says little. A run
is a maximal set of consecutive flagged slices (slices that were not scored, e.g. outside the model's
trained range, break a run, as unflagged ones do); its peak is its highest-scoring slice. Runs are ranked
by peak score, highest first (ties: the earlier run first). One rule for the `kdmed score` JSON
(`findings`, numbered by the input's slice index), the review app's findings strip and the PDF record
(`study_findings`, numbered as the app shows slices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["Finding", "group_findings", "study_findings"]


@dataclass(frozen=True)
class Finding:
    first: int  # slice numbers, in the order given (e.g. the input's slice index)
    last: int
    peak: int
    peak_score: float
    n_slices: int

    def describe(self) -> str:
        span = f"slice {self.first}" if self.first == self.last else f"slices {self.first}-{self.last}"
        return f"{span}, peak {self.peak_score:.4g} at slice {self.peak}"

    def to_dict(self) -> dict:
        return asdict(self) | {"summary": self.describe()}


def group_findings(slices: Sequence[int], scores: Sequence[float], flagged: Sequence[bool]) -> list[Finding]:
    """Runs of consecutive flagged slices. `slices` are slice numbers (need not start at 0, must be
    strictly increasing), `scores` their scores (NaN: not scored), `flagged` their flags."""
    if not len(slices) == len(scores) == len(flagged):
        raise ValueError(
            f"{len(slices)} slices, {len(scores)} scores and {len(flagged)} flags: give one of each"
        )
    if any(b <= a for a, b in zip(slices, slices[1:], strict=False)):
        raise ValueError("slice numbers must be strictly increasing")
    runs: list[list[int]] = []
    for k, (number, score, flag) in enumerate(zip(slices, scores, flagged, strict=True)):
        if not flag or score is None or math.isnan(score):
            continue
        if runs and runs[-1][-1] == k - 1 and slices[k - 1] == number - 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    findings = []
    for run in runs:
        peak = max(run, key=lambda k: scores[k])
        findings.append(Finding(slices[run[0]], slices[run[-1]], slices[peak], float(scores[peak]), len(run)))
    return sorted(findings, key=lambda f: (-f.peak_score, f.first))


def study_findings(result, threshold: float) -> list[Finding]:
    """The findings of a scored volume (`kdmed.inference.StudyResult`) at `threshold`, numbered by the
    result's slice positions: the app's slice slider and the slice names (`result.names`). A 2D image has
    no slices to group: none."""
    if result.geometry is None:
        return []
    positions = list(range(len(result.scores)))
    return group_findings(positions, list(result.scores), list(result.flags_at(threshold)))
