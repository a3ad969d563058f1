"""Cost of each Captum attribution of MKD's score: milliseconds per slice and peak memory (a benchmark).

    python -m kdmed.localize.benchmark --model models/brain/mkd/model.safetensors \\
        --images data/processed/brain/test.npz --slices 16 --batch-size 8 [--device auto]
    python -m kdmed.localize.benchmark --backbone vgg16 --weights random --image-size 256   # paper's teacher

Each attribution method runs in its own Python process, so the peak figure is that method's alone: the
process's peak resident memory, and its rise above what the process held with the model and slices
loaded (the attribution's working memory); on CUDA also the peak GPU memory allocated above the loaded
model. Timing excludes a first warm-up batch. Prints one JSON line per method with
the batch size and Captum's internal batch size stated. Speed needs no trained weights: a random teacher
costs the same as a trained one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from kdmed.config import ATTRIBUTION_METHODS, AttributionConfig
from kdmed.data.slices import load_images
from kdmed.data.transforms import to_model_input
from kdmed.runtime import resolve_device


def build_model(args) -> tuple[torch.nn.Module, int]:
    """The MKD detector and its input side: a trained checkpoint, or a fresh MKD from `--backbone`."""
    if args.model:
        from kdmed.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(args.model)
        return checkpoint.detector, checkpoint.serving.preprocessing.image_size
    from kdmed.models.registry import build_detector, default_config

    return build_detector("mkd", default_config("mkd", args.backbone, args.weights)), args.image_size


def load_slices(path: str | None, count: int, size: int) -> torch.Tensor:
    """[0, 1] float slices (count, 3, size, size) from a processed split (repeated if short), or random."""
    images = load_images(path, count, size)
    if images.shape[0] < count:
        images = images.repeat(-(-count // images.shape[0]), 1, 1, 1)[:count]
    return to_model_input(images)


def measure(method: str, args) -> dict:
    device = resolve_device(args.device)
    detector, size = build_model(args)
    detector = detector.to(device).eval()
    config = AttributionConfig(
        smoothgrad_samples=args.smoothgrad_samples,
        ig_steps=args.ig_steps,
        internal_batch_size=args.internal_batch_size,
    )
    from kdmed.models.attribution import raw_attributions
    from kdmed.models.maps import smooth_attributions

    images = load_slices(args.images, args.slices, size).to(device)

    def run(batch: torch.Tensor) -> None:
        smooth_attributions(raw_attributions(detector, batch, config, method), 4.0)

    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # model and slices in memory
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    run(images[: args.batch_size])  # warm-up: allocator growth, cuDNN autotuning, first-call overheads
    started = time.perf_counter()
    for start in range(0, images.shape[0], args.batch_size):
        run(images[start : start + args.batch_size])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    memory = {
        "peak_rss_mib": round(peak / 2**20, 1),
        "peak_rss_above_loaded_mib": round(max(peak - loaded, 0) / 2**20, 1),
    }
    if device.type == "cuda":
        extra = torch.cuda.max_memory_allocated(device) - before
        memory["peak_gpu_memory_above_loaded_mib"] = round(extra / 2**20, 1)
    return {
        "attribution": method,
        "backbone": detector.config.backbone,
        "image_size": size,
        "slices": images.shape[0],
        "batch_size": args.batch_size,
        "internal_batch_size": args.internal_batch_size,
        "smoothgrad_samples": args.smoothgrad_samples if method == "smoothgrad" else None,
        "ig_steps": args.ig_steps if method == "integrated_gradients" else None,
        "ms_per_slice": round(1000 * seconds / images.shape[0], 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        **memory,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(ATTRIBUTION_METHODS), choices=ATTRIBUTION_METHODS)
    p.add_argument("--model", default=None, help="an MKD checkpoint (else a fresh MKD from --backbone)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", help="imagenet, random or a .pth path")
    p.add_argument("--image-size", type=int, default=128, help="without --model")
    p.add_argument("--images", default=None, help="a processed split .npz (else random images)")
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--internal-batch-size", type=int, default=16)
    p.add_argument("--smoothgrad-samples", type=int, default=50)
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the per-method child process
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args)), flush=True)
        return
    for method in args.methods:
        child = [sys.executable, "-m", "kdmed.localize.benchmark", *argv, "--one", method]
        done = subprocess.run(child, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"benchmark of {method} failed:\n{done.stderr[-2000:]}")
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
