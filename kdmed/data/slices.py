"""Processed slices in memory: what `preprocess` wrote, read back for training, evaluation and plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdmed.errors import DatasetError


@dataclass(frozen=True)
class SliceSet:
    """One split of one dataset: uint8 images (N, C, S, S) plus labels, masks and provenance."""

    images: torch.Tensor
    masks: np.ndarray  # (N, S, S) uint8, 1 = abnormal pixel
    has_mask: np.ndarray  # (N,) bool: False for anomalies with an image-level label only
    labels: np.ndarray  # (N,) 0 normal, 1 anomalous
    patients: np.ndarray
    names: np.ndarray
    slices: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, keep: np.ndarray) -> SliceSet:
        index = np.flatnonzero(keep) if keep.dtype == bool else keep
        return SliceSet(
            self.images[torch.from_numpy(index)],
            self.masks[index],
            self.has_mask[index],
            self.labels[index],
            self.patients[index],
            self.names[index],
            self.slices[index],
        )

    def normals(self) -> SliceSet:
        return self.subset(self.labels == 0)


def split_path(processed_dir: str | Path, dataset: str, split: str) -> Path:
    return Path(processed_dir) / dataset / f"{split}.npz"


def load_split(processed_dir: str | Path, dataset: str, split: str) -> SliceSet:
    """Read `<processed_dir>/<dataset>/<split>.npz` written by the preprocess stage."""
    path = split_path(processed_dir, dataset, split)
    if not path.is_file():
        raise DatasetError(
            f"processed split '{path}' is missing; run `dvc repro preprocess@{dataset}` first."
        )
    with np.load(path, allow_pickle=False) as data:
        return SliceSet(
            images=torch.from_numpy(data["images"]),
            masks=data["masks"],
            has_mask=data["has_mask"],
            labels=data["labels"].astype(np.int64),
            patients=data["patients"],
            names=data["names"],
            slices=data["slices"],
        )


def load_images(path: str | Path | None, count: int, size: int) -> torch.Tensor:
    """The first `count` uint8 images (N, C, size, size) of a processed split file, resized bilinearly when
    stored at another size; random images when `path` is None (the benchmarks: speed needs no content)."""
    if path is None:
        return torch.randint(0, 256, (count, 1, size, size), dtype=torch.uint8)
    with np.load(path) as data:
        images = torch.from_numpy(data["images"][:count])
    if images.shape[-1] != size:
        images = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear")
        images = images.round().clamp(0, 255).to(torch.uint8)
    return images
