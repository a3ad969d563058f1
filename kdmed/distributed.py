"""Data-parallel training under torchrun: one process per GPU (NCCL) or per CPU share (gloo).

`torchrun --standalone --nproc_per_node N -m kdmed train --dataset D --method M` starts N copies of the
ordinary `kdmed train`; torchrun sets RANK, LOCAL_RANK and WORLD_SIZE, and `start` joins them into one
process group. Multi-node runs use torchrun's rendezvous flags (`--nnodes`, `--node_rank`,
`--rdzv_endpoint`); nothing here changes.

What stays the same as one process (PyTorch DDP semantics, Li et al., VLDB 2020):
- the global batch and the learning rate: every rank takes `batch_size / N` images of each global batch,
  and DDP averages the gradients, which equals the gradient of the mean loss over the global batch;
- the data order: every rank draws the same seeded permutation per epoch and keeps its own contiguous
  share of each global batch (`local_batch`), so the N ranks together see exactly the batches one process
  would (torch's DistributedSampler partitions the epoch instead, `order[rank::N]`, which gives the same
  global batches only for its own permutation; this keeps the one-process order, so checkpoints of
  earlier single-process runs stay reproducible);
- BatchNorm: on GPUs the student's BatchNorm layers become SyncBatchNorm (statistics over the global
  batch); on the CPU (gloo), where PyTorch has no SyncBatchNorm, each rank normalises with its own share's
  statistics, the one difference from one process; `tests/test_distributed.py` states the tolerance.

Only rank 0 validates, calibrates and writes the checkpoint, logs and resume points (all atomically).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from kdmed.errors import ConfigError
from kdmed.runtime import resolve_device

__all__ = ["SINGLE", "Distributed", "from_environment", "local_batch", "start", "stop", "wrap"]

TIMEOUT = datetime.timedelta(minutes=30)  # a rank waiting on rank 0's validation pass must not time out


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: rank 0 of 1 when not started by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.world_size} processes ({self.backend})" if self.active else "1 process"


SINGLE = Distributed()


def from_environment(environ: dict[str, str] | None = None) -> Distributed:
    """The rank and world size torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE); SINGLE without them."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        world, rank, local = (
            int(env["WORLD_SIZE"]),
            int(env.get("RANK", "0")),
            int(env.get("LOCAL_RANK", "0")),
        )
    except ValueError as error:
        raise ConfigError(
            f"WORLD_SIZE / RANK / LOCAL_RANK must be integers (torchrun sets them), got {error}; "
            "start distributed training with `torchrun --nproc_per_node N -m kdmed train ...`"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not in a world of {world} processes; start it with torchrun")
    return Distributed(rank=rank, world_size=world, local_rank=local)


def start(requested_device: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group (NCCL on CUDA, gloo on the CPU) and pick this rank's device:
    `cuda:LOCAL_RANK` when CUDA is used, the CPU otherwise. Outside torchrun: one process, no group."""
    dist = from_environment()
    device = resolve_device(requested_device)
    if not dist.active:
        return dist, device
    if device.type == "cuda":
        if dist.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {dist.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "use --nproc_per_node <= the GPU count, or common.device=cpu for gloo on the CPU"
            )
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, timeout=TIMEOUT)
    return Distributed(dist.rank, dist.world_size, dist.local_rank, backend), device


def stop(dist: Distributed) -> None:
    if dist.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def local_batch(order: torch.Tensor, step: int, batch_size: int, dist: Distributed) -> torch.Tensor:
    """This rank's indices of global batch `step` of the epoch's `order`: a contiguous share of
    `batch_size / world_size`; the shares of all ranks together are the one-process batch."""
    if batch_size % dist.world_size:
        raise ConfigError(
            f"batch size {batch_size} cannot be split evenly over {dist.world_size} processes; "
            f"set methods.<method>.batch_size to a multiple of {dist.world_size}"
        )
    share = batch_size // dist.world_size
    start = step * batch_size + dist.rank * share
    return order[start : start + share]


class LossModule(torch.nn.Module):
    """`detector.loss` as a forward pass, which is what DistributedDataParallel hooks into."""

    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, batch: torch.Tensor, teacher: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.detector.loss(batch, teacher)


def wrap(detector: torch.nn.Module, dist: Distributed, device: torch.device) -> torch.nn.Module:
    """The module whose forward is the training loss: DDP over `detector.loss` when distributed (rank 0's
    weights broadcast at construction, gradients averaged in backward), the plain wrapper otherwise."""
    if not dist.active:
        return LossModule(detector)
    student = getattr(detector, "student", None)
    if device.type == "cuda" and student is not None:
        # on GPUs, BatchNorm statistics over the whole global batch, as one process computes them
        detector.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
    module = LossModule(detector)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        # every trainable parameter takes part in each method's loss (the frozen teacher has none), so
        # DDP need not search the graph for unused ones
        find_unused_parameters=False,
    )
