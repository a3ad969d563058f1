"""Near-duplicate 2D images by perceptual hash (pHash: the sign pattern of the low 8 x 8 DCT coefficients
of the 32 x 32 grey image against their median; Zauner 2010), so that a test figure is not inflated by
images that also sit, nearly unchanged, in training. Own code (SciPy's DCT): 64-bit hashes compared by
Hamming distance."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
from PIL import Image
from scipy.fft import dctn

from kdmed.data.records import StudyRecord
from kdmed.errors import DatasetError

SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # the copy kept: test first, so test stays intact


def phash(path: str) -> int:
    """The 64-bit perceptual hash of an image file."""
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    except (OSError, ValueError) as error:
        raise DatasetError(f"'{path}' cannot be read to hash it: {error}") from error
    low = dctn(grey, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term is left out of the median, as in pHash
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def _groups(hashes: list[int], max_distance: int) -> list[list[int]]:
    """Connected groups of hashes within `max_distance` bits (union-find over all pairs)."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    values = np.array(hashes, dtype=np.uint64)
    for i in range(len(values)):
        xor = np.bitwise_xor(values[i + 1 :], values[i])
        distance = np.array([int(x).bit_count() for x in xor]) if xor.size else np.zeros(0, int)
        for j in np.flatnonzero(distance <= max_distance):
            parent[root(i + 1 + int(j))] = root(i)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(hashes)):
        members[root(i)].append(i)
    return [group for group in members.values() if len(group) > 1]


def deduplicate(records: list[StudyRecord], max_distance: int) -> tuple[list[StudyRecord], dict]:
    """Keep one image of each near-duplicate group: a test copy when there is one (the others, in
    training or validation, are dropped, so no duplicate crosses into test), else the first. Returns the
    kept records and a report: groups found, images dropped, groups spanning splits, and groups holding
    both labels (a duplicate labelled normal and anomalous)."""
    hashes = [phash(r.image) for r in records]
    groups = _groups(hashes, max_distance)
    drop: set[int] = set()
    crossing = mixed_labels = 0
    for group in groups:
        splits = {records[i].split for i in group}
        crossing += int("test" in splits and len(splits) > 1)
        mixed_labels += int(len({records[i].label for i in group}) > 1)
        keep = min(group, key=lambda i: (SPLIT_PRIORITY.get(records[i].split, 3), records[i].image))
        drop |= set(group) - {keep}
    report = {
        "max_distance_bits": max_distance,
        "images": len(records),
        "duplicate_groups": len(groups),
        "images_dropped": len(drop),
        "groups_crossing_train_and_test": crossing,
        "groups_with_both_labels": mixed_labels,
        "dropped_by_split": {
            split: sum(records[i].split == split for i in drop) for split in ("train", "val", "test")
        },
    }
    return [replace(r) for i, r in enumerate(records) if i not in drop], report
