"""torchrun data parallelism (kdmed.distributed): 2 gloo processes on the CPU train what one process trains.

The ranks share every global batch (same images, same learning rate, gradients averaged), so the one
intended difference from one process is BatchNorm's statistics, taken per rank's half of the batch. The
tolerances below are stated for that; without BatchNorm (`test_ddp_without_batchnorm_is_exact`) the two
agree to float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from kdmed.checkpoint import load_checkpoint
from kdmed.distributed import Distributed, from_environment, local_batch, wrap
from kdmed.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_ranks_share_each_global_batch_exactly():
    order = torch.randperm(37, generator=torch.Generator().manual_seed(0))
    for world in (1, 2, 4):
        for step in range(37 // 8):
            shares = [
                local_batch(order, step, 8, Distributed(rank=r, world_size=world)) for r in range(world)
            ]
            assert all(len(s) == 8 // world for s in shares)
            assert torch.equal(torch.cat(shares), order[step * 8 : (step + 1) * 8])


def test_uneven_batch_and_bad_environment_are_clear_errors():
    with pytest.raises(ConfigError, match="multiple of 3"):
        local_batch(torch.arange(10), 0, 8, Distributed(rank=0, world_size=3))
    assert from_environment({}) == Distributed()
    assert from_environment({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}).rank == 1
    with pytest.raises(ConfigError, match="torchrun"):
        from_environment({"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="not in a world"):
        from_environment({"WORLD_SIZE": "2", "RANK": "2"})


def _params_with_outputs(tiny_brain_file: Path, out: Path) -> Path:
    data = yaml.safe_load(tiny_brain_file.read_text())
    data["train"].update(out_dir=str(out / "models"), epochs=3, validate_every=1)
    data["evaluate"]["out_dir"] = str(out / "reports")
    data["common"]["num_threads"] = 1  # one core per rank, and the same for the one-process run
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KDMED_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def one_and_two_processes(tiny_brain, tmp_path_factory):
    """The tiny brain STPM trained by one process and by `torchrun --nproc_per_node 2` (gloo)."""
    root = tmp_path_factory.mktemp("ddp")
    source = Path(tiny_brain.preprocess.out_dir).parent / "params.yaml"
    runs = {}
    for name, launcher in (
        ("one", [sys.executable, "-m", "kdmed"]),
        (
            "two",
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
            + ["-m", "kdmed"],
        ),
    ):
        (root / name).mkdir()
        params = _params_with_outputs(source, root / name)
        _run(launcher + ["--params", str(params), "train", "--dataset", "brain", "--method", "stpm"], REPO)
        runs[name] = root / name / "models" / "brain" / "stpm" / "model.safetensors"
    return tiny_brain, runs


def _losses(checkpoint_file: Path) -> list[float]:
    log = checkpoint_file.parents[3] / "reports" / "brain" / "stpm" / "train_log.csv"
    return [float(line.split(",")[1]) for line in log.read_text().splitlines()[1:]]


@pytest.mark.slow
def test_two_gloo_processes_train_what_one_process_trains(one_and_two_processes):
    """Same global batches and learning rate; BatchNorm statistics per rank's half batch are the one
    difference, so: per-epoch training loss within 5 %, student weights within 5 % of their norm."""
    _, runs = one_and_two_processes
    one, two = load_checkpoint(runs["one"]), load_checkpoint(runs["two"])
    assert one.header.training.processes == 1 and two.header.training.processes == 2
    assert one.header.training.steps == two.header.training.steps  # the same global batches
    losses_one, losses_two = _losses(runs["one"]), _losses(runs["two"])
    assert len(losses_one) == len(losses_two) == 3
    for a, b in zip(losses_one, losses_two, strict=True):
        assert abs(a - b) / a < 0.05, (losses_one, losses_two)
    with torch.no_grad():
        weights_one = torch.cat([p.flatten() for p in one.detector.student.parameters()])
        weights_two = torch.cat([p.flatten() for p in two.detector.student.parameters()])
        relative = float((weights_one - weights_two).norm() / weights_one.norm())
    assert 0 < relative < 0.05, f"students differ by {relative:.3f} of their norm"


@pytest.mark.slow
def test_only_rank_zero_writes(one_and_two_processes):
    _, runs = one_and_two_processes
    folder = runs["two"].parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]
    log = folder.parents[2] / "reports" / "brain" / "stpm" / "train_log.csv"
    assert len(log.read_text().splitlines()) == 1 + 3


class _NoBatchNorm(torch.nn.Module):
    """A detector-shaped toy without BatchNorm: `loss` is all DDP needs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))

    def loss(self, batch: torch.Tensor, teacher=None) -> torch.Tensor:
        return self.net(batch).pow(2).mean()


def _steps(rank: int, world: int, port: int, images: torch.Tensor, out: Path) -> None:
    """Four SGD steps of the toy on the global batches of a seeded order, as `kdmed.train` shares them."""
    torch.set_num_threads(1)
    dist = Distributed(rank=rank, world_size=world, backend="gloo")
    if world > 1:
        torch.distributed.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    model = _NoBatchNorm()
    module = wrap(model, dist, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
    for step in range(4):
        optimizer.zero_grad()
        module(images[local_batch(order, step, 8, dist)], None).backward()
        optimizer.step()
    if rank == 0:
        torch.save(model.state_dict(), out)
    if world > 1:
        torch.distributed.destroy_process_group()


def test_ddp_without_batchnorm_is_exact(tmp_path):
    """The mechanism alone (shares of the global batch, gradient averaging, one learning rate): two gloo
    ranks end at the one-process weights to float rounding."""
    import socket

    images = torch.rand(32, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    _steps(0, 1, 0, images, tmp_path / "one.pt")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(_steps, args=(2, port, images, tmp_path / "two.pt"), nprocs=2, join=True)
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
