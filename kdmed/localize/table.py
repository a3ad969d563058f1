"""The localisation table for the README and the closing note, from the `localize` stage's metrics."""

from __future__ import annotations

import json

from kdmed.config import Params
from kdmed.paths import localize_dir
from kdmed.published import MKD_MVTEC_PIXEL_AUROC


def _percent(row: dict, key: str, interval: bool = False) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if interval and low is not None and high is not None:
        return f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{100 * value:.1f}"


def localize_table(params: Params) -> str:
    """One row per dataset and map: pixel AUROC (with its patient-bootstrap interval when there is one) and
    AUPRO of the maps as the app shows them (per study, floored at the normal level), the same on the raw
    maps and per study without the floor, lesion mass ratio, milliseconds per slice, and the MKD paper's
    MVTec AD pixel AUROC for the same attribution."""
    lines = [
        "| dataset | map | pixel AUROC | AUPRO@0.3 | raw pixel AUROC / AUPRO | study-peak pixel AUROC / AUPRO "
        "| lesion mass ratio | ms / slice | MKD paper, MVTec pixel AUROC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in params.localize.datasets:
        path = localize_dir(params, dataset) / "metrics.json"
        if not path.is_file():
            lines.append(f"| {dataset} | not localised yet (`dvc repro`) | | | | | | | |")
            continue
        metrics = json.loads(path.read_text())
        for name, row in metrics["maps"].items():
            attribution = name.removeprefix("mkd_")
            paper = MKD_MVTEC_PIXEL_AUROC.get(attribution) if name.startswith("mkd_") else None
            ratio = row.get("lesion_mass_ratio")
            lines.append(
                f"| {dataset} | {name} | {_percent(row, 'pixel_auroc', interval=True)} "
                f"| {_percent(row, 'aupro_0.3')} "
                f"| {_percent(row, 'pixel_auroc_raw')} / {_percent(row, 'aupro_0.3_raw')} "
                f"| {_percent(row, 'pixel_auroc_study_peak')} / {_percent(row, 'aupro_0.3_study_peak')} "
                f"| {'-' if ratio is None else f'{ratio:.2f}'} "
                f"| {row['ms_per_slice']:.0f} | {'-' if paper is None else f'{paper:.1f}'} |"
            )
    return "\n".join(lines) + "\n"
