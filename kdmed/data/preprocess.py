"""The `preprocess` stage: index a dataset, turn its studies into model-ready slices, write them for DVC.

Outputs, under `<preprocess.out_dir>/<dataset>/`: `train.npz`, `val.npz`, `test.npz` (uint8 images
(N, C, S, S), uint8 masks (N, S, S), labels, patients, names, slice indices), `index.csv` (one row per
slice) and `summary.json` (counts). Volumes keep the slices the dataset's slice policy admits (index range and
minimum foreground, `kdmed.contract.SlicePolicy`), in every split: the same rule serving applies to
uploads, which come without a lesion mask, so the test split measures exactly what a reader is shown.
Lesion slices outside the policy are counted in the summary. Training keeps normal slices only: anomalous
slices of training patients are dropped and counted (BMAD protocol).
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from kdmed import atomic
from kdmed.config import DatasetConfig, Params
from kdmed.contract import SCORED
from kdmed.data.adapters import index_dataset
from kdmed.data.arrays import collapse_grey, to_uint8
from kdmed.data.records import SPLITS, StudyRecord, check_patient_splits, slice_policy, with_test_from
from kdmed.data.transforms import build_image_transform, build_volume_transform
from kdmed.errors import DatasetError
from kdmed.paths import processed_dir, processed_summary_path

log = logging.getLogger(__name__)


def study_items(
    record: StudyRecord, params: Params, config: DatasetConfig, size: int
) -> tuple[list[dict], int]:
    """The slices the policy admits (volumes) or the one image (2D) of a study at `size` pixels, each a
    dict with image/mask/label/name; and the number of lesion slices the policy left out."""
    if record.is_volume:
        transform = build_volume_transform(params.preprocess, slice_policy(config), size)
        every = transform(
            {"image": record.image, "mask": record.mask or None, "brain_mask": record.brain_mask or None}
        )
        items = [item for item in every if item["status"] == SCORED]
        for item in items:
            item["name"] = f"{record.patient}/slice_{item['slice']:03d}"
            del item["view"]
        return items, sum(item["label"] for item in every if item["status"] != SCORED)
    transform = build_image_transform(size, params.preprocess.stain_normalization, config.center_crop)
    data = {"image": record.image}
    if record.mask:
        data["mask"] = record.mask
    item = transform(data)
    item.update(label=record.label, slice=-1, name=Path(record.image).name)
    if record.label == 1 and "mask" not in item:
        item["mask"] = None  # anomalous without a pixel mask (image-level label only)
    return [item], 0


def dataset_records(name: str, params: Params) -> tuple[list[StudyRecord], dict]:
    """The dataset's indexed studies, with the test split taken from another dataset (`test_from`) and
    near-duplicates removed (`dedup_distance`) when asked; and what that did, for summary.json."""
    config = params.dataset(name)
    records = index_dataset(config, params.common.seed)
    notes: dict = {}
    if config.test_from:
        if config.test_from == name:
            raise DatasetError(f"dataset '{name}': 'test_from' names the dataset itself; name another one.")
        other = index_dataset(params.dataset(config.test_from), params.common.seed)
        records = with_test_from(records, other, config.test_from)
        notes["test_from"] = config.test_from
    if config.dedup_distance >= 0:
        from kdmed.data.dedup import deduplicate

        records, notes["deduplication"] = deduplicate(records, config.dedup_distance)
    check_patient_splits(records)
    return records, notes


def preprocess_dataset(name: str, params: Params) -> dict:
    """Run the stage for one dataset; returns the summary also written to summary.json."""
    config = params.dataset(name)
    records, notes = dataset_records(name, params)
    rows: dict[str, list[dict]] = defaultdict(list)
    dropped = outside_policy = 0
    size = params.image_size(name)
    for record in records:
        items, outside = study_items(record, params, config, size)
        outside_policy += outside
        for item in items:
            if record.split == "train" and item["label"] == 1:
                dropped += 1
                continue
            rows[record.split].append({**item, "patient": record.patient, "group": record.group})
    rows = _cap(rows, config.max_images_per_split, params.common.seed)
    out_dir = processed_dir(params, name)
    channels = (
        3 if any(collapse_grey(r["image"]).shape[0] == 3 for split in rows.values() for r in split) else 1
    )
    summary = {
        "dataset": name,
        "adapter": config.adapter,
        "root": config.root,
        "channels": channels,
        "image_size": size,
        **notes,
        "dropped_anomalous_training_slices": dropped,
        "lesion_slices_outside_slice_policy": outside_policy,
        "splits": {},
    }
    index_rows = []
    for split in SPLITS:
        items = rows.get(split, [])
        if not items:
            raise DatasetError(
                f"dataset '{name}': the '{split}' split is empty; check the data and split settings."
            )
        _write_split(out_dir / f"{split}.npz", items, channels)
        labels = [r["label"] for r in items]
        summary["splits"][split] = {
            "images": len(items),
            "normal": labels.count(0),
            "anomalous": labels.count(1),
            "patients": len({r["patient"] for r in items}),
            "with_mask": sum(r.get("mask") is not None and bool(np.any(r["mask"])) for r in items),
        }
        index_rows += [
            {
                "split": split,
                "name": r["name"],
                "patient": r["patient"],
                "group": r["group"],
                "slice": r["slice"],
                "label": r["label"],
            }
            for r in items
        ]
    if summary["splits"]["test"]["anomalous"] == 0 or summary["splits"]["test"]["normal"] == 0:
        raise DatasetError(f"dataset '{name}': the test split needs both normal and anomalous images.")
    atomic.write_csv(out_dir / "index.csv", index_rows)
    atomic.write_json(processed_summary_path(params, name), summary)
    return summary


def _cap(rows: dict[str, list[dict]], limit: int, seed: int) -> dict[str, list[dict]]:
    if limit <= 0:
        return rows
    rng = np.random.default_rng(seed)
    capped = {}
    for split, items in rows.items():
        keep = sorted(rng.permutation(len(items))[:limit]) if len(items) > limit else range(len(items))
        capped[split] = [items[i] for i in keep]
    return capped


def _write_split(path: Path, items: list[dict], channels: int) -> None:
    images = []
    for item in items:
        image = collapse_grey(item["image"])
        images.append(np.repeat(image, 3, axis=0) if image.shape[0] < channels else image)
    size = items[0]["image"].shape[-1]
    masks = np.stack(
        [np.zeros((size, size), bool) if item.get("mask") is None else item["mask"] for item in items]
    )
    has_mask = np.array([item.get("mask") is not None for item in items])
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=to_uint8(np.stack(images)),
        masks=masks.astype(np.uint8),
        has_mask=has_mask,
        labels=np.array([item["label"] for item in items], dtype=np.int8),
        patients=np.array([item["patient"] for item in items]),
        names=np.array([item["name"] for item in items]),
        slices=np.array([item["slice"] for item in items], dtype=np.int32),
    )
    atomic.write_bytes(path, buffer.getvalue())
