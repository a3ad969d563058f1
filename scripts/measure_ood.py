"""How often does the out-of-distribution guard warn, on studies a model should and should not accept?

    python scripts/measure_ood.py                   # after `make demo` and the real models it names
    python scripts/measure_ood.py --per-class 50    # fewer 2D images per class (faster)

Every study goes through the serving path (`load_study` + `score_study`, as `kdmed score` and the app);
the WBC test split is checked on its preprocessed model inputs, which are exactly what serving feeds the
model. Models trained before the guard get their profile first (`kdmed profile-inputs`, from their own
training and validation splits). Cases (issue 18):
- the demo brain models (synthetic brains) on the 10 real BraTS FLAIR volumes: should warn;
- the demo brain models on their own demo test volumes: should not;
- the real BraTS STPM model (real/params.yaml) on its 3 test patients: should not (and on the other 7);
- the real brain-MRI-2D STPM model on OCT2017 test B-scans: should warn; on its own test images: rarely;
- the real WBC (dataset1) STPM model on PBC cells (another lab): measured; on its own test split: rarely.
Rates go to stdout and .bench/ood_rates.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from kdmed.backfill_profile import backfill_profile
from kdmed.checkpoint import load_checkpoint
from kdmed.config import load_params
from kdmed.data.slices import load_split
from kdmed.inference import score_study
from kdmed.input_profile import study_check
from kdmed.io import load_study
from kdmed.models.registry import METHOD_NAMES
from kdmed.paths import checkpoint_path
from kdmed.runtimes import with_runtime

DATA = Path("../shared/data")


def brats_flair() -> dict[str, Path]:
    files = {p.parent.name: p for p in sorted((DATA / "brats2015").glob("*/Flair*.nii.gz"))}
    files |= {p.parent.name: p for p in sorted((DATA / "brats2018").glob("*/FLAIR.nii.gz"))}
    return files


def sample_files(folder: Path, per_class: int, seed: int = 0) -> list[Path]:
    files = []
    for group in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = sorted(f for f in group.iterdir() if f.suffix.lower() in {".jpeg", ".jpg", ".png", ".bmp"})
        files += random.Random(seed).sample(found, min(per_class, len(found)))
    return files


REFIT = False


def model(params_file: str, dataset: str, method: str):
    params = load_params(params_file)
    backfill_profile(params, dataset, method, replace=REFIT)
    path = checkpoint_path(params, dataset, method)
    return with_runtime(load_checkpoint(path), "torch", path), params


def rate(checkpoint, paths: list[Path]) -> dict:
    warned, distances = [], []
    for path in paths:
        check = score_study(checkpoint, load_study(path)).out_of_distribution
        warned.append(bool(check.warn))
        distances.append(check.distance)
    return summary(warned, distances, checkpoint)


def summary(warned: list[bool], distances: list[float], checkpoint) -> dict:
    d = np.asarray([x for x in distances if x is not None], dtype=float)
    return {
        "studies": len(warned),
        "warned": int(sum(warned)),
        "rate": round(float(np.mean(warned)), 4) if warned else None,
        "distance_median": round(float(np.median(d)), 3) if d.size else None,
        "threshold": round(checkpoint.serving.input_profile.threshold, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100, help="2D images sampled per class folder")
    parser.add_argument("--refit", action="store_true", help="recompute the models' stored profiles first")
    args = parser.parse_args()
    global REFIT
    REFIT = args.refit
    rows: dict[str, dict] = {}

    def report(name: str, row: dict) -> None:
        rows[name] = row
        print(f"{name:62s} {row['warned']:4d} / {row['studies']:4d} warned  (median distance "
              f"{row['distance_median']}, limit {row['threshold']})", flush=True)  # fmt: skip

    flair = brats_flair()
    demo_test = sorted(Path("data/demo/brain").glob("*/*_flair.nii.gz"))
    demo_params = load_params("params.yaml")
    demo_test_patients = set(map(str, load_split(demo_params.preprocess.out_dir, "brain", "test").patients))
    for method in METHOD_NAMES:
        checkpoint, _ = model("params.yaml", "brain", method)
        report(
            f"demo brain {method} <- real BraTS FLAIR (should warn)", rate(checkpoint, list(flair.values()))
        )
        own = [p for p in demo_test if p.parent.name in demo_test_patients]
        report(f"demo brain {method} <- its demo test volumes (should not)", rate(checkpoint, own))

    checkpoint, params = model("real/params.yaml", "brats", "stpm")
    test = set(map(str, load_split(params.preprocess.out_dir, "brats", "test").patients))
    report(
        "real brats stpm <- its 3 test patients (should not)",
        rate(checkpoint, [flair[p] for p in sorted(test)]),
    )
    others = [flair[p] for p in sorted(set(flair) - test)]
    report("real brats stpm <- its 7 train/validation patients", rate(checkpoint, others))

    checkpoint, _ = model("real/params.yaml", "brain_mri_2d", "stpm")
    report("real brain_mri_2d stpm <- OCT2017 test B-scans (should warn)",
           rate(checkpoint, sample_files(DATA / "oct2017" / "test", args.per_class)))  # fmt: skip
    report("real brain_mri_2d stpm <- its own test images (rarely)",
           rate(checkpoint, sample_files(DATA / "brain_mri_2d" / "test", args.per_class)))  # fmt: skip

    checkpoint, params = model("real/params.yaml", "wbc", "stpm")
    neutrophils = sorted((DATA / "wbc_pbc" / "neutrophil").glob("*.jpg"))
    neutrophils = random.Random(0).sample(neutrophils, min(2 * args.per_class, len(neutrophils)))
    report("real wbc (dataset1) stpm <- PBC neutrophils (other lab)", rate(checkpoint, neutrophils))
    report("real wbc (dataset1) stpm <- PBC cells, all 8 classes",
           rate(checkpoint, sample_files(DATA / "wbc_pbc", args.per_class // 4)))  # fmt: skip
    test_split = load_split(params.preprocess.out_dir, "wbc", "test")
    checks = [
        study_check(checkpoint.detector, checkpoint.serving.input_profile, x[None])
        for x in test_split.images.numpy()
    ]
    for label, name in ((0, "normal neutrophils"), (1, "other classes")):
        picked = [c for c, y in zip(checks, test_split.labels.tolist(), strict=True) if y == label]
        report(f"real wbc (dataset1) stpm <- its own test split, {name} (rarely)",
               summary([c.warn for c in picked], [c.distance for c in picked], checkpoint))  # fmt: skip
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/ood_rates.json").write_text(json.dumps(rows, indent=2))
    print("wrote .bench/ood_rates.json")


if __name__ == "__main__":
    main()
