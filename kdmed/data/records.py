"""Study records and the rules every adapter shares: the patient-level splits (seeded; no patient crosses
splits), the validation share carved from training, cross-site test splits, and the listing of images."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kdmed.config import DatasetConfig
from kdmed.contract import SlicePolicy
from kdmed.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
UNKNOWN = -1  # label decided per slice (volumes) during preprocessing


@dataclass(frozen=True)
class StudyRecord:
    """One study (a volume or a 2D image) with everything needed to turn it into labelled slices."""

    image: str
    label: int  # 0 normal, 1 anomalous, UNKNOWN for volumes (decided per slice)
    patient: str
    split: str = ""
    mask: str = ""  # abnormality mask (2D) or segmentation volume; "" when none
    group: str = ""  # class or folder name, for reporting
    is_volume: bool = False
    brain_mask: str = ""  # volumes: voxels outside it (label 0) are set to background before anything else


VOLUME_ADAPTERS = frozenset({"brats", "ixi"})  # adapters whose studies are 3D volumes scored slice by slice


def adapter_reads_volumes(adapter: str) -> bool:
    """True when the adapter's studies are volumes: its models score volumes, slice by slice."""
    return adapter in VOLUME_ADAPTERS


def check_patient_splits(records: list[StudyRecord]) -> None:
    """Raise if any patient appears in more than one split (a leak between training and test)."""
    seen: dict[str, str] = {}
    for record in records:
        if record.split not in SPLITS:
            raise DatasetError(
                f"record for '{record.image}' has split {record.split!r}; expected one of {SPLITS}."
            )
        previous = seen.setdefault(record.patient, record.split)
        if previous != record.split:
            raise DatasetError(
                f"patient '{record.patient}' appears in both '{previous}' and '{record.split}' splits."
            )


def split_patients(
    patients: list[str],
    fractions: tuple[float, float, float],
    seed: int,
    strata: dict[str, str] | None = None,
) -> dict[str, str]:
    """Seeded assignment of patients to train/val/test, stratified (e.g. with / without lesion) so that
    every split sees every stratum when it is large enough; at least one patient per split overall."""
    unique = sorted(set(patients))
    if len(unique) < 3:
        raise DatasetError(f"need at least 3 patients to split into train/val/test, found {len(unique)}.")
    groups: dict[str, list[str]] = {}
    for patient in unique:
        groups.setdefault((strata or {}).get(patient, ""), []).append(patient)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for _, members in sorted(groups.items()):
        n = len(members)
        n_test = max(1, round(fractions[2] * n)) if n >= 2 else 0
        n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
        names = ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
        for rank, i in enumerate(rng.permutation(n)):
            assignment[members[i]] = names[rank]
    missing = [split for split in SPLITS if split not in assignment.values()]
    if missing:
        raise DatasetError(
            f"split fractions {fractions} leave the {missing} split(s) empty among "
            f"{len(unique)} patients; add patients or change 'split'."
        )
    return assignment


def find_one(folder: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        hits = sorted(
            p for p in folder.iterdir() if p.is_file() and re.fullmatch(pattern, p.name, re.IGNORECASE)
        )
        if hits:
            return hits[0]
    return None


def images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def carve_validation(records: list[StudyRecord], fractions, seed: int) -> list[StudyRecord]:
    """Move a seeded share of the training patients to validation (for layouts without a val split)."""
    train_patients = sorted({r.patient for r in records if r.split == "train"})
    if len(train_patients) < 2:
        raise DatasetError("need at least two training patients to hold one out for validation.")
    share = fractions[1] / (fractions[0] + fractions[1])
    n_val = max(1, round(share * len(train_patients)))
    order = np.random.default_rng(seed).permutation(len(train_patients))
    val = {train_patients[i] for i in order[:n_val]}
    return [replace(r, split="val") if r.patient in val else r for r in records]


def split_labelled(records: list[StudyRecord], config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """Normals go to train/val/test by the configured fractions; anomalies only to val/test (by patient)."""
    fractions = split_fractions(config)
    normals = [r for r in records if r.label == 0]
    anomalies = [r for r in records if r.label == 1]
    normal_splits = split_patients([r.patient for r in normals], fractions, seed)
    anomaly_patients = sorted({r.patient for r in anomalies} - set(normal_splits))
    share_val = fractions[1] / (fractions[1] + fractions[2])
    order = np.random.default_rng(seed + 1).permutation(len(anomaly_patients))
    n_val = round(share_val * len(anomaly_patients))
    anomaly_splits = {
        anomaly_patients[i]: ("val" if rank < n_val else "test") for rank, i in enumerate(order)
    }
    splits = {**anomaly_splits, **normal_splits}
    return [replace(r, split=splits[r.patient]) for r in records]


def with_test_from(records: list[StudyRecord], other: list[StudyRecord], name: str) -> list[StudyRecord]:
    """This dataset's train and validation studies with every study of dataset `name` as the test split
    (cross-site testing); patient ids get the other dataset's name so none can collide."""
    own = [r for r in records if r.split != "test"]
    moved = [replace(r, split="test", patient=f"{name}:{r.patient}") for r in other]
    if not moved:
        raise DatasetError(f"'test_from: {name}' gives no studies; check that dataset's settings.")
    return own + moved


def split_fractions(config: DatasetConfig) -> tuple[float, float, float]:
    return (config.split.train, config.split.val, config.split.test)


def slice_policy(config: DatasetConfig) -> SlicePolicy:
    """The dataset's slice settings as the policy stored in its checkpoints."""
    first, last = config.slice_range if config.slice_range is not None else (0, None)
    return SlicePolicy(
        axis=config.slice_axis, first=first, last=last, min_foreground_pixels=config.min_foreground_pixels
    )
