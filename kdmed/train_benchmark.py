"""Training speed and peak memory of each method with a given teacher (a benchmark, not a test).

    python -m kdmed.train_benchmark --methods stpm rd4ad mkd --paper-backbones --weights random \\
        --image-size 256 --steps 200 [--images data/processed/brain/train.npz] [--device auto]

Runs the shared training loop (`kdmed.train.fit`, teacher forward included: no feature cache) for
`--steps` optimiser steps at each method's official batch size (or `--batch-size`) and prints one JSON line
per run: images/s over the steps after the first epoch's warm-up, peak GPU memory of that run (CUDA) or
the peak resident memory of the process so far (CPU: run one method per process for a per-method figure),
device and precision. Random-init teachers are fine for speed: the GPU
machines have no internet. Images come from a processed split (`.npz`, e.g. real BraTS slices) or are
random when `--images` is not given.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from kdmed.data.slices import load_images
from kdmed.models.registry import METHOD_NAMES, build_detector, default_config, paper_backbone
from kdmed.runtime import amp_dtype, resolve_device
from kdmed.train import FitSettings, fit


def run(method: str, backbone: str, args) -> dict:
    device = resolve_device(args.device)
    amp = amp_dtype(device, not args.no_amp)
    config = default_config(method, backbone, args.weights)
    batch = args.batch_size or config.batch_size
    images = load_images(args.images, max(batch * args.steps_per_epoch, batch), args.image_size)
    torch.manual_seed(0)
    detector = build_detector(method, config)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    epochs = max(2, -(-args.steps // args.steps_per_epoch))
    started = time.perf_counter()
    state = fit(
        detector,
        images,
        images[:batch],
        FitSettings(
            epochs=epochs,
            batch_size=batch,
            optimizer=config.optimizer,
            device=device,
            amp=amp,
            seed=0,
            validate_every=epochs,
            desc=f"{method}/{backbone}",
        ),
    )
    seconds = time.perf_counter() - started
    steady = state.history[1:]  # the first epoch includes warm-up (cuDNN autotuning, allocator growth)
    rate = sum(h["images_per_s"] for h in steady) / len(steady)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        memory = {"peak_gpu_memory_mib": round(peak)}
    else:
        memory = {"peak_process_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    return {
        "method": method,
        "backbone": backbone,
        "weights": args.weights,
        "image_size": args.image_size,
        "batch_size": batch,
        "steps": epochs * args.steps_per_epoch,
        "images_per_s": round(rate, 1),
        "wall_s": round(seconds, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": str(amp) if amp else "float32",
        "trainable_parameters_m": round(sum(p.numel() for p in detector.trainable_parameters()) / 1e6, 3),
        **memory,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--paper-backbones", action="store_true", help="each method with its paper's teacher")
    parser.add_argument("--weights", default="imagenet", help="imagenet, random or a .pth path")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=0, help="0: each method's official batch size")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--steps-per-epoch", type=int, default=25)
    parser.add_argument("--images", default=None, help="a processed split .npz (else random images)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-amp", action="store_true")
    args = parser.parse_args(argv)
    for method in args.methods:
        backbone = paper_backbone(method) if args.paper_backbones else args.backbone
        print(json.dumps(run(method, backbone, args)), flush=True)


if __name__ == "__main__":
    main()
