"""Review records of one scored study: per-slice scores as CSV and a one-page PDF summary (matplotlib).

Neither contains patient-identifying DICOM fields (name, id, birth date, institution, dates) unless the
reader opts in with `include_phi=True`; the model, its threshold and the operating threshold the reader
chose are always stated, so that a record says how its verdict was reached.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from kdmed.contract import SCORED, CheckpointHeader
from kdmed.inference import StudyResult

MAX_PDF_SLICES = 6


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
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "slice",
            "name",
            "status",
            "score",
            "normalized_score",
            "flagged",
            "operating_threshold",
            "calibrated_threshold",
        ]
    )
    flagged = result.flags_at(context.operating_threshold)
    for i, name in enumerate(result.names):
        score = result.scores[i]
        writer.writerow(
            [
                result.slice_indices[i],
                name,
                result.status[i],
                "" if np.isnan(score) else f"{score:.6g}",
                "" if np.isnan(result.normalized[i]) else f"{result.normalized[i]:.4f}",
                int(flagged[i]),
                f"{context.operating_threshold:.6g}",
                f"{result.threshold:.6g}",
            ]
        )
    return buffer.getvalue().encode("utf-8")


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


def _unscored(result: StudyResult) -> str:
    """ ", 12 outside the trained range, 3 with too little tissue (not scored)" or ""."""
    from kdmed.contract import LITTLE_TISSUE, OUTSIDE_RANGE

    parts = [f"{result.count(s)} {s.removeprefix('too ')}" if s == LITTLE_TISSUE else f"{result.count(s)} {s}"
             for s in (OUTSIDE_RANGE, LITTLE_TISSUE) if result.count(s)]  # fmt: skip
    return f", {' and '.join(parts)} (not scored)" if parts else ""


def record_figure(result: StudyResult, context: ReviewContext, overlays: dict[int, np.ndarray]):
    """The record as one A4 matplotlib figure (see `pdf_report`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flagged = result.flags_at(context.operating_threshold)
    lines = _record_lines(result, context, flagged)
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    figure = plt.figure(figsize=(8.27, 11.69))
    figure.text(0.06, 0.965, "kdmed anomaly screening: review record", fontsize=15, weight="bold")
    figure.text(0.06, 0.945, f"Created {created}. Decision support only: a clinician reviews every flag.")
    figure.text(0.06, 0.915, lines[0], fontsize=13, weight="bold")
    for k, line in enumerate(lines[1:]):
        figure.text(0.06, 0.89 - 0.018 * k, line, wrap=True)
    if len(result.scores) > 1:
        axis = figure.add_axes((0.1, 0.6, 0.84, 0.14))
        axis.plot(result.slice_indices, result.scores, color="black", linewidth=1, label="score")
        axis.axhline(context.operating_threshold, color="red", linewidth=0.8, label="threshold")
        axis.set_xlabel("slice")
        axis.set_ylabel("score")
        axis.legend(loc="upper right", fontsize=7)
    for count, (position, image) in enumerate(list(overlays.items())[:MAX_PDF_SLICES]):
        row, column = divmod(count, 3)
        axis = figure.add_axes((0.06 + column * 0.31, 0.3 - row * 0.26, 0.27, 0.22))
        axis.imshow(image)
        axis.set_xticks([])
        axis.set_yticks([])
        flag = "flagged" if flagged[position] else "not flagged"
        axis.set_title(f"{result.names[position]}: {result.scores[position]:.4g} ({flag})", fontsize=8)
    return figure


def pdf_report(result: StudyResult, context: ReviewContext, overlays: dict[int, np.ndarray]) -> bytes:
    """A one-page A4 PDF: verdict, study score, model and thresholds, the study's description (identifying
    fields only if they are in `context.study`), the score along the slices and the top slices with their
    overlays (`overlays`: slice position -> RGB uint8 image, most suspicious first). Text is embedded as
    TrueType, so the record is searchable."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with plt.rc_context({"pdf.fonttype": 42, "font.size": 9}):
        figure = record_figure(result, context, overlays)
        buffer = io.BytesIO()
        with PdfPages(buffer, metadata={"Title": "kdmed review record", "Creator": "kdmed"}) as pdf:
            pdf.savefig(figure)
        plt.close(figure)
    return buffer.getvalue()
