"""Training-time augmentation of normal images, for small normal sets (an option: the official code of
STPM, RD4AD and MKD trains without it).

Applied to the stored uint8 batch before `to_model_input`, drawn from the training loop's seeded
generator (so a resumed run continues the same draws), and requantised to uint8, so the student only
ever sees inputs on the grid that serving feeds it. Every transform keeps an image normal: a flip or a
quarter turn of a cell crop, a mirrored brain slice, a slightly brighter or darker scan.

A teacher-feature cache cannot be used with it (each epoch sees other pixels): `kdmed.train.fit`
bypasses the cache whenever augmentation is on.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("hflip", "vflip", "rot90", "intensity")
INTENSITY_GAIN = 0.1  # "intensity": each image multiplied by a gain drawn from [0.9, 1.1]


def augment_batch(images: torch.Tensor, names: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) uint8 -> the same shape and dtype, each image transformed independently."""
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; use some of {list(AUGMENTATIONS)}.")
    out = images.clone()
    count = out.shape[0]

    def chosen() -> torch.Tensor:
        return torch.rand(count, generator=generator) < 0.5

    if "hflip" in names:
        pick = chosen()
        out[pick] = out[pick].flip(-1)
    if "vflip" in names:
        pick = chosen()
        out[pick] = out[pick].flip(-2)
    if "rot90" in names:
        if out.shape[-1] != out.shape[-2]:
            raise ValueError(f"rot90 needs square images; got {tuple(out.shape[-2:])}.")
        turns = torch.randint(0, 4, (count,), generator=generator)
        for index in range(count):
            if turns[index]:
                out[index] = torch.rot90(out[index], int(turns[index]), dims=(-2, -1))
    if "intensity" in names:
        gain = 1.0 + (torch.rand(count, generator=generator) * 2 - 1) * INTENSITY_GAIN
        out = (out.float() * gain.view(-1, 1, 1, 1)).round().clamp(0, 255).to(torch.uint8)
    return out
