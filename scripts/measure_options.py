"""Before/after evidence for the improvement options (README: improvements), on the real pipeline's own
splits: each option is real/params.yaml with a few settings changed, trained and evaluated into
tmp/options/<option>/, and compared with the pipeline's results in reports-real/ (the "before").

    python scripts/measure_options.py                  # every option, in the order below
    python scripts/measure_options.py --only stain     # some of them

Run `make real` first (the baseline models and the preprocessed splits). One run of each; CPU training of
RD4AD and MKD is not bitwise repeatable, so `baseline_repeat` trains the baseline again to show the
run-to-run spread that any gain must exceed. Writes tmp/options/results.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from kdmed.config import Params, deep_merge
from kdmed.config_schema import build
from kdmed.data.preprocess import preprocess_dataset
from kdmed.evaluate import evaluate_stage, transfer_stage
from kdmed.train import train_stage

REAL = Path("real/params.yaml")
BASE_REPORTS = Path("reports-real")
OUT = Path("tmp/options")
KEYS = ("image_auroc", "pixel_auroc", "aupro_0.3", "test_sensitivity", "test_specificity")

# name: (what changes, runs). A run is (dataset, method) trained and evaluated; a transfer is scored too.
OPTIONS: dict[str, dict] = {
    "baseline_repeat": {"changes": {}, "train": [("brats", "rd4ad")]},
    "augment": {
        "changes": {"train": {"augment": ["hflip", "intensity"]}},
        "train": [("brats", "rd4ad")],
    },
    "longer_training": {"changes": {"train": {"steps": 2400}}, "train": [("brats", "rd4ad")]},
    "stain": {
        "changes": {"preprocess": {"stain_normalization": "reinhard"}},
        "preprocess": ["pbc", "wbc"],
        "train": [("pbc", "rd4ad"), ("wbc", "rd4ad")],
        "transfers": ["pbc_to_wbc-rd4ad", "wbc_to_pbc-rd4ad"],
    },
    "augment_wbc": {
        "changes": {"train": {"augment": ["hflip", "vflip", "rot90", "intensity"]}},
        "train": [("wbc", "rd4ad"), ("pbc", "rd4ad")],
        "transfers": ["pbc_to_wbc-rd4ad", "wbc_to_pbc-rd4ad"],
    },
    # make real's speed settings (600 steps, 8 selection passes, 4,800 training slices) against the
    # previous ones, on the two datasets they touch most
    "previous_speed_settings": {
        "changes": {"train": {"steps": 800, "selection_passes": 10, "max_train_images": 6400}},
        "train": [("brats", "rd4ad"), ("ixi_t1", "rd4ad")],
    },
    "size_256": {
        "changes": {"common": {"image_size": 256}},
        "preprocess": ["brats"],
        "train": [("brats", "rd4ad")],
    },
}


def option_params(name: str, option: dict) -> Params:
    data = yaml.safe_load(REAL.read_text())
    root = OUT / name
    outs = {
        "train": {"out_dir": str(root / "models"), "resume": False},
        "evaluate": {"out_dir": str(root / "reports")},
    }
    if option.get("preprocess"):
        outs["preprocess"] = {"out_dir": str(root / "processed")}
    data = deep_merge(deep_merge(data, option["changes"]), outs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return build(Params, data, "")


def pick(metrics: dict) -> dict:
    return {key: metrics.get(key) for key in KEYS}


def run_option(name: str, option: dict) -> list[dict]:
    params = option_params(name, option)
    for dataset in option.get("preprocess", []):
        preprocess_dataset(dataset, params)
    rows = []
    for dataset, method in option["train"]:
        started = time.perf_counter()
        train_stage(params, dataset, method)
        seconds = time.perf_counter() - started
        after = evaluate_stage(params, dataset, method)
        before = json.loads((BASE_REPORTS / dataset / method / "metrics.json").read_text())
        rows.append(
            {
                "option": name,
                "report": f"{dataset}/{method}",
                "train_seconds": round(seconds, 1),
                "before": pick(before),
                "after": pick(after),
            }
        )
    for transfer in option.get("transfers", []):
        config = params.transfers[transfer]
        after = transfer_stage(params, transfer)
        before = json.loads((BASE_REPORTS / config.report / config.method / "metrics.json").read_text())
        rows.append(
            {
                "option": name,
                "report": f"{config.report}/{config.method}",
                "train_seconds": None,
                "before": pick(before),
                "after": pick(after),
            }
        )
    return rows


def cell(before, after) -> str:
    if after is None:
        return "-"
    if before is None:
        return f"{100 * after:.1f}"
    return f"{100 * before:.1f} → {100 * after:.1f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| option | report | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for row in rows:
        cells = [cell(row["before"][k], row["after"][k]) for k in KEYS]
        lines.append(f"| {row['option']} | {row['report']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(OPTIONS), default=list(OPTIONS))
    args = parser.parse_args(argv)
    results_file = OUT / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in args.only:
        print(f"option {name} ...", file=sys.stderr, flush=True)
        results[name] = run_option(name, OPTIONS[name])
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=2))
    print(markdown([row for name in OPTIONS if name in results for row in results[name]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
