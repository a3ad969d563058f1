"""Training-step time of each method, contiguous (NCHW) against channels_last (NHWC) memory format.

    .venv/bin/python scripts/bench_channels_last.py [--steps 10] [--sizes 64 96] [--batch 16]

The teacher's features are computed once (as `train.teacher_cache_mb` does in training), random-weight
EfficientNet-Lite0 teachers; prints one line per method and size. `kdmed.train.fit` trains in channels_last
because of these figures (README, "Results on the demo data").
"""

from __future__ import annotations

import argparse
import time

import torch

from kdmed.config import MkdConfig, Rd4adConfig, StpmConfig
from kdmed.models.mkd import MKD
from kdmed.models.rd4ad import RD4AD
from kdmed.models.stpm import STPM

MODELS = {
    "stpm": lambda: STPM(StpmConfig(backbone="efficientnet_lite0", weights="random")),
    "rd4ad": lambda: RD4AD(Rd4adConfig(backbone="efficientnet_lite0", weights="random", strides=(4, 8, 16))),
    "mkd": lambda: MKD(
        MkdConfig(backbone="efficientnet_lite0", weights="random", input_normalization="backbone")
    ),
}


def step_ms(name: str, size: int, batch: int, steps: int, channels_last: bool) -> float:
    torch.manual_seed(0)
    detector = MODELS[name]().train()
    optimizer = torch.optim.Adam(detector.trainable_parameters(), lr=1e-3)
    images = torch.rand(batch, 3, size, size)
    if channels_last:
        detector = detector.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        teacher = detector.teacher_features(images)
    warm_up = 3
    for index in range(steps + warm_up):
        if index == warm_up:
            started = time.perf_counter()
        loss = detector.loss(images, teacher)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    for name in MODELS:
        for size in args.sizes:
            plain = step_ms(name, size, args.batch, args.steps, channels_last=False)
            nhwc = step_ms(name, size, args.batch, args.steps, channels_last=True)
            print(
                f"{name} {size} px batch {args.batch}: contiguous {plain:.1f} ms, channels_last {nhwc:.1f} ms "
                f"per step, x{plain / nhwc:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
