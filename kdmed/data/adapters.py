"""Dataset adapters: index a dataset folder into study records with labels, masks, patients and splits.

An adapter only lists files and assigns splits; reading and slicing happen in `kdmed.data.preprocess`.
Splits are always drawn by patient (seeded), never by slice or image, so no patient crosses splits
(`kdmed.data.records`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from kdmed.config import DatasetConfig
from kdmed.data.records import (
    SPLITS,
    UNKNOWN,
    VOLUME_ADAPTERS,
    StudyRecord,
    adapter_reads_volumes,
    carve_validation,
    check_patient_splits,
    find_one,
    images_in,
    split_fractions,
    split_labelled,
    split_patients,
    with_test_from,
)
from kdmed.errors import DatasetError

__all__ = [  # the indexers, and the record names that importers still take from here
    "SPLITS",
    "UNKNOWN",
    "VOLUME_ADAPTERS",
    "StudyRecord",
    "adapter_reads_volumes",
    "check_patient_splits",
    "index_dataset",
    "split_patients",
    "with_test_from",
]


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
        image = find_one(case, [rf".*_{modality}{nii}", rf"{modality}(_.*)?{nii}"])
        if image is None:
            continue
        seg = find_one(case, [rf".*_seg{nii}", rf"OTMultiClass{nii}", rf"GT(_.*)?{nii}", rf".*seg.*{nii}"])
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
    splits = split_patients([r.patient for r in records], split_fractions(config), seed, strata)
    return [replace(r, split=splits[r.patient]) for r in records]


def _has_lesion(segmentation: Path) -> bool:
    """Whether a segmentation volume has any labelled voxel (used to stratify the patient split)."""
    import nibabel as nib

    try:
        return bool(np.asanyarray(nib.load(segmentation).dataobj).any())
    except Exception as error:  # nibabel raises many types for a bad file
        raise DatasetError(f"segmentation '{segmentation}' cannot be read: {error}") from error


def index_bmad(root: Path, config: DatasetConfig, seed: int) -> list[StudyRecord]:
    """BMAD layout: `train/good[/img]`, `valid|test/good/img`, `valid|test/Ungood/img` + `.../label`."""
    records = []
    for split_dir, split in (("train", "train"), ("valid", "val"), ("test", "test")):
        for group, label in (("good", 0), ("Ungood", 1)):
            base = root / split_dir / group
            images = images_in(base / "img") or images_in(base)
            if split == "train" and label == 1 and images:
                raise DatasetError(
                    f"BMAD layout: '{base}' holds anomalies in the training split; remove them."
                )
            for image in images:
                mask = base / "label" / image.name
                if label == 1 and not mask.is_file():
                    mask_candidates = images_in(base / "label")
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
        records = carve_validation(records, split_fractions(config), seed)
    return records


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
            for p in images_in(class_dir)
        ]
    test_patients = {r.patient for r in test}
    train = [
        StudyRecord(image=str(p), label=0, patient=patient_of(p), split="train", group="NORMAL")
        for p in images_in(root / "train" / "NORMAL")
        if patient_of(p) not in test_patients
    ]
    if not train:
        raise DatasetError(f"OCT2017 layout: no usable images in '{root / 'train' / 'NORMAL'}'.")
    return carve_validation(train, split_fractions(config), seed) + test


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
    return split_labelled(records, config, seed)


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
        for image in images_in(root / folder):
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
    return split_labelled(records, config, seed)


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
            if split == "train" and label == 1 and images_in(class_dir):
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
                for p in images_in(class_dir)
            ]
    found = {r.group.lower() for r in records}
    if not normal & found:
        raise DatasetError(
            f"class folders under '{root}': no normal class folder {sorted(normal)} among {sorted(found)}."
        )
    if own_split:
        return carve_validation([r for r in records if r.split == "train"], split_fractions(config), seed) + [
            r for r in records if r.split == "test"
        ]
    return split_labelled(records, config, seed)


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
    splits = split_patients([r.patient for r in records], split_fractions(config), seed)
    return [replace(r, split=splits[r.patient]) for r in records]
