"""Review records of one scored study: per-slice scores as CSV and a PDF summary (matplotlib).

Neither contains patient-identifying DICOM fields (name, id, birth date, institution, dates) unless the
reader opts in with `include_phi=True`; the model, its threshold and the operating threshold the reader
chose are always stated, so that a record says how its verdict was reached. The PDF also states the
out-of-distribution check (`input_check`, the sentence the app shows) and the findings (`kdmed.findings`):
runs of flagged slices, ranked, with the peak slices of the first six pictured.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from kdmed import atomic
from kdmed.contract import SCORED, CheckpointHeader
from kdmed.findings import Finding, study_findings
from kdmed.inference import StudyResult

MAX_PDF_SLICES = 6
MAX_LISTED_FINDINGS = 12  # the rest are counted (every slice is in the CSV)
NO_PROFILE = "The input check could not run: this model carries no training-input profile."
RECORD_STYLE = {"pdf.fonttype": 42, "font.size": 9}  # TrueType text (searchable), 9 pt


@dataclass(frozen=True)
class ReviewContext:
    """What the record says besides the scores: model, study description, operating point."""

    model: CheckpointHeader
    model_file: str
    study: dict  # StudyMetadata.to_dict(include_phi=...) plus shape / spacing
    operating_threshold: float  # the threshold the reader used (the calibrated one unless moved)


def scores_csv(result: StudyResult, context: ReviewContext) -> bytes:
    """One row per slice: index, name, status (scored, or why not), raw score, normalised score (0.5 =
    calibrated threshold), flagged at the operating threshold, and the two thresholds."""
    columns = (
        "slice",
        "name",
        "status",
        "score",
        "normalized_score",
        "flagged",
        "operating_threshold",
        "calibrated_threshold",
    )
    flagged = result.flags_at(context.operating_threshold)
    rows = []
    for i, name in enumerate(result.names):
        score = result.scores[i]
        values = (
            result.slice_indices[i],
            name,
            result.status[i],
            "" if np.isnan(score) else f"{score:.6g}",
            "" if np.isnan(result.normalized[i]) else f"{result.normalized[i]:.4f}",
            int(flagged[i]),
            f"{context.operating_threshold:.6g}",
            f"{result.threshold:.6g}",
        )
        rows.append(dict(zip(columns, values, strict=True)))
    return atomic.csv_text(rows, columns, line_end="\n").encode("utf-8")


def _record_lines(result: StudyResult, context: ReviewContext, flagged: np.ndarray) -> list[str]:
    study_flagged = result.study_flagged_at(context.operating_threshold)
    card, serving = context.model.card, context.model.serving
    calibration = serving.calibration
    study = context.study
    described = ", ".join(
        f"{key.replace('_', ' ')} {study[key]}"
        for key in ("source_kind", "modality", "series_description", "shape", "spacing")
        if study.get(key) not in (None, "", [])
    )
    lines = [
        "Study not scored: no slice inside what the model was trained on"
        if result.count(SCORED) == 0
        else f"Study {'FLAGGED for review' if study_flagged else 'not flagged'}",
        f"Study score {result.study_score:.4g} ({serving.aggregation.how} of the slice scores); "
        f"{int(flagged.sum())} of {len(result.scores)} slices flagged{_unscored(result)}.",
        f"Operating threshold {context.operating_threshold:.4g} (calibrated {result.threshold:.4g}: "
        f"{calibration.operating_point()}"
        + ("; moved by the reader)." if context.operating_threshold != result.threshold else ")."),
        f"Model: {card.method} / {card.backbone}, trained on '{card.dataset}' "
        f"on {card.trained_at[:10]}; file {context.model_file}.",
        f"Study: {described}.",
    ]
    lines += [f"{key}: {value}" for key, value in sorted(study.get("phi", {}).items())]
    return lines


def input_check(check) -> tuple[str, str]:
    """How the out-of-distribution check (`kdmed.ood.OodCheck`; None when the scorer made none) is told,
    in the app and the PDF alike: ("warn", its message), ("ok", the distance and its threshold) or
    ("not run", why not)."""
    if check is None or not check.available:
        return "not run", (check.message if check is not None and check.message else NO_PROFILE)
    if check.warn:
        return "warn", check.message
    return "ok", (
        f"Input check: this study resembles the model's training data (distance {check.distance:.3g}, "
        f"threshold {check.threshold:.3g})."
    )


def findings_lines(findings: list[Finding], is_volume: bool) -> list[str]:
    """The record's findings section, one paragraph: each finding's `describe()`, ranked (none for a 2D
    image; past `MAX_LISTED_FINDINGS` only counted)."""
    if not is_volume:
        return []
    if not findings:
        return ["Findings: none (no slice is above the operating threshold)."]
    listed = "; ".join(f"({k}) {f.describe()}" for k, f in enumerate(findings[:MAX_LISTED_FINDINGS], start=1))
    more = len(findings) - MAX_LISTED_FINDINGS
    runs = f"{len(findings)} run{'s' if len(findings) > 1 else ''} of flagged slices"
    return [
        f"Findings: {runs}, ranked by peak score (the peak slices of the first "
        f"{min(len(findings), MAX_PDF_SLICES)} are pictured): {listed}"
        + (f"; and {more} more (every slice: the CSV record)." if more > 0 else ".")
    ]


def _unscored(result: StudyResult) -> str:
    """ ", 12 outside the trained range, 3 with too little tissue (not scored)" or ""."""
    from kdmed.contract import LITTLE_TISSUE, OUTSIDE_RANGE

    parts = [f"{result.count(s)} {s.removeprefix('too ')}" if s == LITTLE_TISSUE else f"{result.count(s)} {s}"
             for s in (OUTSIDE_RANGE, LITTLE_TISSUE) if result.count(s)]  # fmt: skip
    return f", {' and '.join(parts)} (not scored)" if parts else ""


# The record's layout in fractions of an A4 page. The text block grows with the study's fields and
# wrapped lines; the chart and the slices follow it down, onto a second page when they no longer fit.
TEXT_TOP = 0.9  # the top of the first line under the verdict
LINE_STEP = 0.018  # from one line's top to the next line's
LINE_GAP = 0.004  # below a wrapped line
CHART_TOP = 0.74  # where the chart sits when the text leaves room
CHART_HEIGHT = 0.14
GAP = 0.03  # between the text and the chart (room for the top tick label)
BELOW_CHART = 0.08  # the chart's axis label and the first row of slice titles
SLICE_SIZE = 0.19  # a square slice fills the 0.27 page-width axes at this height (A4: 2.2 in)
SLICE_STEP = 0.23
PAGE_TOP = 0.93  # where a continuation page's content starts, under its heading
PAGE_BOTTOM = 0.04


class _Pages:
    """A4 figures filled from the top: `place` reserves a block of a given height below the cursor,
    starting a continuation page when the block would run past the bottom margin."""

    def __init__(self, plt, title: str) -> None:
        self.plt, self.title = plt, title
        self.figures: list = []
        self.new_page(first=True)

    def new_page(self, first: bool = False) -> None:
        figure = self.plt.figure(figsize=(8.27, 11.69))
        if not first:
            figure.text(0.06, 0.965, f"{self.title} (continued)", fontsize=11, weight="bold")
        self.figures.append(figure)
        self.cursor = TEXT_TOP if first else PAGE_TOP

    @property
    def figure(self):
        return self.figures[-1]

    def line(self, text: str, **style) -> None:
        """One line of the text block (wrapped at the page's edge), below the previous one; `style`:
        matplotlib text properties (colour, weight)."""
        for attempt in range(2):
            label = self.figure.text(0.06, self.cursor, text, wrap=True, va="top", **style)
            box = label.get_window_extent(self.figure.canvas.get_renderer())
            bottom = self.figure.transFigure.inverted().transform((0, box.y0))[1]
            if bottom >= PAGE_BOTTOM or attempt:
                self.cursor = min(self.cursor - LINE_STEP, bottom - LINE_GAP)
                return
            label.remove()
            self.new_page()

    def place(self, height: float, top_at_most: float, above: float) -> float:
        """The top of a block `height` tall with `above` free above it, no higher than `top_at_most`."""
        top = min(top_at_most, self.cursor - above)
        if top - height < PAGE_BOTTOM - 1e-9:  # the usual page ends exactly on the margin
            self.new_page()
            top = self.cursor - max(above, GAP)
        self.cursor = top - height
        return top


def record_figures(result: StudyResult, context: ReviewContext, overlays: dict[int, np.ndarray]) -> list:
    """The record as A4 matplotlib figures (see `pdf_report`): one page unless the study's fields push the
    chart or the slices past its bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flagged = result.flags_at(context.operating_threshold)
    lines = _record_lines(result, context, flagged)
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    pages = _Pages(plt, "kdmed anomaly screening: review record")
    pages.figure.text(0.06, 0.965, pages.title, fontsize=15, weight="bold")
    pages.figure.text(
        0.06, 0.945, f"Created {created}. Decision support only: a clinician reviews every flag."
    )
    pages.figure.text(0.06, 0.915, lines[0], fontsize=13, weight="bold")
    told, sentence = input_check(result.out_of_distribution)
    if told == "warn":  # right under the verdict, before anything reads it
        pages.line(f"WARNING: {sentence}", color="firebrick", weight="bold")
    for line in lines[1:]:
        pages.line(line)
    if told != "warn":
        pages.line(sentence)
    findings = study_findings(result, context.operating_threshold)
    for line in findings_lines(findings, result.geometry is not None):
        pages.line(line)
    ranked = {f.peak: k for k, f in enumerate(findings, start=1)}
    slices_top, above = 0.3 + SLICE_SIZE, GAP  # the first row of slices, without a chart above it
    if len(result.scores) > 1:
        top = pages.place(CHART_HEIGHT + BELOW_CHART, CHART_TOP, GAP)
        axis = pages.figure.add_axes((0.1, top - CHART_HEIGHT, 0.84, CHART_HEIGHT))
        axis.plot(result.slice_indices, result.scores, color="black", linewidth=1, label="score")
        axis.axhline(context.operating_threshold, color="red", linewidth=0.8, label="threshold")
        axis.set_xlabel("slice")
        axis.set_ylabel("score")
        axis.legend(loc="upper right", fontsize=7)
        slices_top, above = pages.cursor, 0.0
    shown = list(overlays.items())[:MAX_PDF_SLICES]
    for row in range(0, len(shown), 3):
        top = pages.place(SLICE_SIZE, slices_top, above)
        slices_top, above = 1.0, SLICE_STEP - SLICE_SIZE  # the next row: right under this one's titles
        for column, (position, image) in enumerate(shown[row : row + 3]):
            axis = pages.figure.add_axes((0.06 + column * 0.31, top - SLICE_SIZE, 0.27, SLICE_SIZE))
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            flag = "flagged" if flagged[position] else "not flagged"
            title = f"{result.names[position]}: {result.scores[position]:.4g} ({flag})"
            if position in ranked:
                title = f"finding {ranked[position]}, peak {title}"
            axis.set_title(title, fontsize=8)
    return pages.figures


def pdf_report(result: StudyResult, context: ReviewContext, overlays: dict[int, np.ndarray]) -> bytes:
    """An A4 PDF, one page unless the study's fields or findings push the chart or slices onto a second:
    verdict, the input check, study score, model and thresholds, the study's description (identifying
    fields only if they are in `context.study`), the findings, the score along the slices and the slices
    with their overlays (`overlays`: slice position -> RGB uint8 image, in the order to show them: the
    findings' peak slices, ranked; see `app.state.prepare_pdf`). Text is embedded as TrueType, so the
    record is searchable."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with plt.rc_context(RECORD_STYLE):
        figures = record_figures(result, context, overlays)
        buffer = io.BytesIO()
        with PdfPages(buffer, metadata={"Title": "kdmed review record", "Creator": "kdmed"}) as pdf:
            for figure in figures:
                pdf.savefig(figure)
                plt.close(figure)
    return buffer.getvalue()
