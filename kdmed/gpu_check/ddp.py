"""A two-process DistributedDataParallel training run (nccl on two GPUs; gloo on the CPU for the test)."""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from kdmed.distributed import LossModule
from kdmed.gpu_check.training import make_optimizer, precision, synchronize, synthetic_images
from kdmed.models.registry import build_detector
from kdmed.runtime import autocast


def _ddp_worker(rank: int, world: int, port: int, config, args: dict, result_file: str) -> None:
    cuda = args["device"] == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(0)
        detector = build_detector(args["method"], config).to(device).train()
        model = nn.parallel.DistributedDataParallel(LossModule(detector), device_ids=[rank] if cuda else None)
        optimizer = make_optimizer(detector, config)
        dtype = precision(device, True)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        images = synthetic_images(args["batch"], args["image_size"], seed=rank).to(device)
        for i in range(args["warmup"] + args["steps"]):
            if i == args["warmup"]:
                synchronize(device)
                dist.barrier()
                started = time.perf_counter()
            with autocast(device, dtype):
                loss = model(images, None)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        synchronize(device)
        dist.barrier()
        seconds = time.perf_counter() - started
        if rank == 0:
            rate = world * args["batch"] * args["steps"] / max(seconds, 1e-9)
            Path(result_file).write_text(json.dumps({"images_per_s": rate, "processes": world}))
    finally:
        dist.destroy_process_group()


def ddp_speed(method: str, config, device_type: str, batch: int, image_size: int, warmup: int, steps: int):
    """Total img/s of a two-process DistributedDataParallel run (nccl on GPUs, gloo on the CPU)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = {"device": device_type, "method": method, "batch": batch, "image_size": image_size}
    args |= {"warmup": warmup, "steps": steps}
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "ddp.json"
        mp.spawn(_ddp_worker, args=(2, port, config, args, str(result)), nprocs=2, join=True)
        return {
            "method": method,
            "backbone": config.backbone,
            "batch_per_process": batch,
            **json.loads(result.read_text()),
        }
