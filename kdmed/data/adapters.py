"""Dataset adapters: index a dataset folder into study records with labels, masks, patients and splits.

An adapter only lists files and assigns splits; reading and slicing happen in `kdmed.data.preprocess`.
Splits are always drawn by patient (seeded), never by slice or image, so no patient crosses splits.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kdmed.config import DatasetConfig
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


def index_dataset(config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """Dispatch to the adapter named in the config; every record comes back with a split."""
    root = Path(config.root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset root '{root}' does not exist or is not a folder; run `dvc repro demo_data` for the demo "
            f"data or point 'datasets.<name>.root' in params.yaml at your data."
        )
    adapters: dict[str, Callable[[Path, DatasetConfig, int], list[StudyRecord]]] = {
        "brats": index_brats,
        "bmad": index_bmad,
        "oct2017": index_oct2017,
        "wbc": index_wbc,
        "folders": index_folders,
        "class_folders": index_class_folders,
        "ixi": index_ixi,
    }
    records = adapters[config.adapter](root, config, seed)
    if not records:
        raise DatasetError(f"adapter '{config.adapter}' found no studies under '{root}'.")
    check_patient_splits(records)
    return records


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


def _find_one(folder: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        hits = sorted(
            p for p in folder.iterdir() if p.is_file() and re.fullmatch(pattern, p.name, re.IGNORECASE)
        )
        if hits:
            return hits[0]
    return None


def index_brats(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """BraTS case folders under `root` and every `extra_roots` folder, split by patient together: 2021
    naming (`<case>_flair.nii.gz`, `<case>_seg.nii.gz`), 2015 naming (`Flair_*.nii.gz`,
    `OTMultiClass.nii.gz`) or the 2018 redistribution's (`FLAIR.nii.gz`, `GT_W.nii.gz`)."""
    modality = re.escape(config.modality)
    nii = r"\.nii(\.gz)?"
    records = []
    roots = [root, *(Path(extra) for extra in config.extra_roots)]
    for folder in roots[1:]:
        if not folder.is_dir():
            raise DatasetError(f"BraTS extra root '{folder}' does not exist; fix 'extra_roots' in params.")
    cases = [case for folder in roots for case in sorted(p for p in folder.iterdir() if p.is_dir())]
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise DatasetError(
            f"BraTS case names repeat across {[str(r) for r in roots]}: patients must be unique."
        )
    for case in cases:
        image = _find_one(case, [rf".*_{modality}{nii}", rf"{modality}(_.*)?{nii}"])
        if image is None:
            continue
        seg = _find_one(case, [rf".*_seg{nii}", rf"OTMultiClass{nii}", rf"GT(_.*)?{nii}", rf".*seg.*{nii}"])
        if seg is None:
            raise DatasetError(
                f"BraTS case '{case}' has a {config.modality} volume but no segmentation "
                f"(expected '*_seg.nii.gz', 'OTMultiClass.nii.gz' or 'GT_W.nii.gz'); slices cannot be "
                "labelled without it."
            )
        records.append(
            StudyRecord(
                image=str(image),
                label=UNKNOWN,
                patient=case.name,
                mask=str(seg),
                group="brain",
                is_volume=True,
            )
        )
    if not records:
        raise DatasetError(f"no BraTS case folder with a '{config.modality}' volume under '{root}'.")
    strata = {r.patient: "lesion" if _has_lesion(Path(r.mask)) else "clean" for r in records}
    splits = split_patients([r.patient for r in records], _fractions(config), seed, strata)
    return [replace(r, split=splits[r.patient]) for r in records]


def _has_lesion(segmentation: Path) -> bool:
    """Whether a segmentation volume has any labelled voxel (used to stratify the patient split)."""
    import nibabel as nib

    try:
        return bool(np.asanyarray(nib.load(segmentation).dataobj).any())
    except Exception as error:  # nibabel raises many types for a bad file
        raise DatasetError(f"segmentation '{segmentation}' cannot be read: {error}") from error


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def index_bmad(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """BMAD layout: `train/good[/img]`, `valid|test/good/img`, `valid|test/Ungood/img` + `.../label`."""
    records = []
    for split_dir, split in (("train", "train"), ("valid", "val"), ("test", "test")):
        for group, label in (("good", 0), ("Ungood", 1)):
            base = root / split_dir / group
            images = _images_in(base / "img") or _images_in(base)
            if split == "train" and label == 1 and images:
                raise DatasetError(
                    f"BMAD layout: '{base}' holds anomalies in the training split; remove them."
                )
            for image in images:
                mask = base / "label" / image.name
                if label == 1 and not mask.is_file():
                    mask_candidates = _images_in(base / "label")
                    mask = next((m for m in mask_candidates if m.stem == image.stem), Path(""))
                records.append(
                    StudyRecord(
                        image=str(image),
                        label=label,
                        patient=f"{split}/{group}/{image.stem}",
                        split=split,
                        mask=str(mask) if label == 1 and str(mask) else "",
                        group=group,
                    )
                )
    if not any(r.split == "train" for r in records):
        raise DatasetError(f"BMAD layout: no training images under '{root / 'train' / 'good'}'.")
    if not any(r.split == "test" for r in records):
        raise DatasetError(f"BMAD layout: no test images under '{root / 'test'}'.")
    if not any(r.split == "val" for r in records):
        records = _carve_validation(records, _fractions(config), seed)
    return records


def _carve_validation(records: list[StudyRecord], fractions, seed: int) -> list[StudyRecord]:
    """Move a seeded share of the training patients to validation (for layouts without a val split)."""
    train_patients = sorted({r.patient for r in records if r.split == "train"})
    if len(train_patients) < 2:
        raise DatasetError("need at least two training patients to hold one out for validation.")
    share = fractions[1] / (fractions[0] + fractions[1])
    n_val = max(1, round(share * len(train_patients)))
    order = np.random.default_rng(seed).permutation(len(train_patients))
    val = {train_patients[i] for i in order[:n_val]}
    return [replace(r, split="val") if r.patient in val else r for r in records]


def index_oct2017(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """OCT2017 class folders: `train/NORMAL` for training, `test/{NORMAL,CNV,DME,DRUSEN}` for testing.

    File names are `<CLASS>-<patient>-<n>.jpeg`; a patient found in the test folder is removed from
    training and validation so that no patient crosses splits.
    """

    def patient_of(path: Path) -> str:
        parts = path.stem.split("-")
        return parts[1] if len(parts) >= 3 else path.stem

    test = []
    test_root = root / "test"
    if not test_root.is_dir():
        raise DatasetError(f"OCT2017 layout: '{test_root}' is missing.")
    for class_dir in sorted(p for p in test_root.iterdir() if p.is_dir()):
        label = 0 if class_dir.name.upper() == "NORMAL" else 1
        test += [
            StudyRecord(image=str(p), label=label, patient=patient_of(p), split="test", group=class_dir.name)
            for p in _images_in(class_dir)
        ]
    test_patients = {r.patient for r in test}
    train = [
        StudyRecord(image=str(p), label=0, patient=patient_of(p), split="train", group="NORMAL")
        for p in _images_in(root / "train" / "NORMAL")
        if patient_of(p) not in test_patients
    ]
    if not train:
        raise DatasetError(f"OCT2017 layout: no usable images in '{root / 'train' / 'NORMAL'}'.")
    return _carve_validation(train, _fractions(config), seed) + test


def _split_labelled(records: list[StudyRecord], config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """Normals go to train/val/test by the configured fractions; anomalies only to val/test (by patient)."""
    fractions = _fractions(config)
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


def index_wbc(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """WBC crops listed in a labels CSV (`image ID,class label`); classes in `normal_classes` are normal."""
    labels_path = root / config.labels_csv
    if not labels_path.is_file():
        raise DatasetError(f"WBC layout: labels CSV '{labels_path}' is missing (set 'labels_csv').")
    images_dir = root / config.images_dir
    masks_dir = root / config.anomaly_masks_dir if config.anomaly_masks_dir else None
    records = []
    with labels_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            image_id, class_label = int(row[0]), int(row[1])
        except (ValueError, IndexError) as error:
            raise DatasetError(
                f"WBC labels '{labels_path}', line {line_no}: expected 'id,class', got {row}."
            ) from error
        image = _wbc_image(images_dir, image_id)
        if image is None:
            raise DatasetError(
                f"WBC labels '{labels_path}' lists image {image_id}, not found in '{images_dir}'."
            )
        label = 0 if class_label in config.normal_classes else 1
        mask = ""
        if masks_dir is not None and label == 1:
            candidate = masks_dir / f"{image.stem}.png"
            mask = str(candidate) if candidate.is_file() else ""
        records.append(
            StudyRecord(
                image=str(image), label=label, patient=image.stem, mask=mask, group=f"class{class_label}"
            )
        )
    return _split_labelled(records, config, seed)


def _wbc_image(folder: Path, image_id: int) -> Path | None:
    # The real dataset keeps segmentation masks as NNN.png beside NNN.bmp: prefer non-PNG images.
    for stem in (f"{image_id:03d}", str(image_id)):
        for suffix in (".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".png"):
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def index_folders(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """A generic pair of folders of normal and abnormal 2D images, optional masks with the same names."""
    masks_dir = root / config.masks_dir if config.masks_dir else None
    records = []
    for folder, label in ((config.normal_dir, 0), (config.abnormal_dir, 1)):
        for image in _images_in(root / folder):
            mask = masks_dir / image.name if masks_dir is not None and label == 1 else None
            records.append(
                StudyRecord(
                    image=str(image),
                    label=label,
                    patient=image.stem,
                    mask=str(mask) if mask is not None and mask.is_file() else "",
                    group=folder,
                )
            )
    if not any(r.label == 0 for r in records):
        raise DatasetError(f"no normal images in '{root / config.normal_dir}'.")
    return _split_labelled(records, config, seed)


def index_class_folders(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """One folder per class; `normal_class_names` are normal. With `<root>/train/` and `<root>/test/`
    class folders (a source's own split, e.g. brain MRI 2D) those splits are kept and validation is carved
    from the training patients; otherwise (e.g. PBC) normals are split by the fractions and anomalies go
    to validation and test only. Each image is its own patient (the sources give no patient id)."""
    normal = {name.lower() for name in config.normal_class_names}
    own_split = (root / "train").is_dir() and (root / "test").is_dir()
    sources = [(root / "train", "train"), (root / "test", "test")] if own_split else [(root, "")]
    records = []
    for base, split in sources:
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            label = 0 if class_dir.name.lower() in normal else 1
            if split == "train" and label == 1 and _images_in(class_dir):
                raise DatasetError(
                    f"class folders: '{class_dir}' holds anomalies in the training split; training uses "
                    f"normal classes only ({sorted(normal)})."
                )
            records += [
                StudyRecord(
                    image=str(p),
                    label=label,
                    patient=f"{split or 'all'}/{class_dir.name}/{p.stem}",
                    split=split,
                    group=class_dir.name,
                )
                for p in _images_in(class_dir)
            ]
    found = {r.group.lower() for r in records}
    if not normal & found:
        raise DatasetError(
            f"class folders under '{root}': no normal class folder {sorted(normal)} among {sorted(found)}."
        )
    if own_split:
        return _carve_validation([r for r in records if r.split == "train"], _fractions(config), seed) + [
            r for r in records if r.split == "test"
        ]
    return _split_labelled(records, config, seed)


def index_ixi(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """Healthy volunteers' volumes `<root>/T1/<subject>_T1.nii.gz` (IXI as processed by NiChart), each
    brain-masked by its parcellation `<root>/DLMUSE/<subject>_T1_DLMUSE.nii.gz` (label > 0 = brain):
    normal studies only, split by subject. Pair with `test_from` for a test set with lesions."""
    modality = config.modality.upper()
    folder = root / modality
    if not folder.is_dir():
        raise DatasetError(
            f"IXI layout: '{folder}' is missing (set 'modality' to the sequence folder, e.g. t1)."
        )
    records = []
    for image in sorted(folder.glob(f"*_{modality}.nii.gz")):
        subject = image.name.removesuffix(f"_{modality}.nii.gz")
        mask = root / "DLMUSE" / f"{subject}_{modality}_DLMUSE.nii.gz"
        if not mask.is_file():
            raise DatasetError(
                f"IXI subject '{subject}' has no brain parcellation '{mask}'; it cannot be masked."
            )
        records.append(
            StudyRecord(
                image=str(image),
                label=0,
                patient=subject,
                group="healthy",
                is_volume=True,
                brain_mask=str(mask),
            )  # fmt: skip
        )
    if not records:
        raise DatasetError(f"IXI layout: no '*_{modality}.nii.gz' volume in '{folder}'.")
    splits = split_patients([r.patient for r in records], _fractions(config), seed)
    return [replace(r, split=splits[r.patient]) for r in records]


def with_test_from(records: list[StudyRecord], other: list[StudyRecord], name: str) -> list[StudyRecord]:
    """This dataset's train and validation studies with every study of dataset `name` as the test split
    (cross-site testing); patient ids get the other dataset's name so none can collide."""
    own = [r for r in records if r.split != "test"]
    moved = [replace(r, split="test", patient=f"{name}:{r.patient}") for r in other]
    if not moved:
        raise DatasetError(f"'test_from: {name}' gives no studies; check that dataset's settings.")
    return own + moved


def _fractions(config: DatasetConfig) -> tuple[float, float, float]:
    return (config.split.train, config.split.val, config.split.test)
