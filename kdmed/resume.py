"""Resume points of the training loop: what an interrupted run needs to continue exactly where it stopped.

A resume point records the hyper-parameters it was trained with. A run whose hyper-parameters differ
(say the learning rate, changed with `dvc exp run -S methods.stpm.optimizer.lr=...`) does not continue
the old run, whose optimiser state would bring back the old learning rate: it starts afresh and says
which keys changed.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdmed import atomic

log = logging.getLogger(__name__)


@dataclass
class FitState:
    """Everything an interrupted run needs to continue exactly where it stopped."""

    epoch: int = 0
    best_epoch: int = 0
    best_value: float = float("inf")
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict] = field(default_factory=list)


def trainable_state(detector: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The student's weights and buffers (the teacher never changes), copied to the CPU."""
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in detector.state_dict().items()
        if not k.startswith("teacher.")
    }


def flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON-able settings -> {"optimizer.lr": 0.4, ...} (lists kept whole)."""
    if not isinstance(settings, dict):
        return {prefix: settings}
    out: dict[str, Any] = {}
    for key, value in settings.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changed_keys(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, e.g. ["optimizer.lr: 0.4 -> 0.1"]."""
    old, new = flatten(stored), flatten(current)
    return [
        f"{key}: {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def save_state(
    path: Path,
    state: FitState,
    detector: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    hyperparameters: dict[str, Any],
) -> None:
    payload = {
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_value": state.best_value,
        "best_state": state.best_state,
        "history": json.dumps(state.history),
        "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        "student": trainable_state(detector),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic.write_bytes(path, buffer.getvalue())


def restore_state(
    path: Path,
    detector: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    hyperparameters: dict[str, Any],
    desc: str,
) -> FitState:
    """The run stored at `path`, loaded into `detector`, `optimizer` and `generator`; a fresh FitState
    (nothing loaded) when it was trained with other hyper-parameters."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    stored = json.loads(payload["hyperparameters"]) if "hyperparameters" in payload else None
    current = json.loads(json.dumps(hyperparameters, sort_keys=True))
    if stored != current:
        changes = changed_keys(stored, current) if stored is not None else ["(not recorded)"]
        log.warning(
            "%s: not resuming from %s: it was trained with other hyper-parameters (%s); starting afresh.",
            desc,
            path,
            "; ".join(changes),
        )
        return FitState()
    detector.load_state_dict(payload["student"], strict=False)  # the student only: the teacher is frozen
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["generator"])
    log.info("resuming %s from epoch %d (%s)", desc, payload["epoch"], path)
    return FitState(
        epoch=payload["epoch"],
        best_epoch=payload["best_epoch"],
        best_value=payload["best_value"],
        best_state=payload["best_state"],
        history=json.loads(payload["history"]),
    )
