"""Model checkpoints: one `.safetensors` file holding the weights and, in its header, everything needed to
score with them (method, architecture, preprocessing, image size, calibrated threshold and score
statistics, training record, data and code versions). No pickle: loading cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kdmed import atomic
from kdmed.errors import CheckpointError
from kdmed.models.base import Detector
from kdmed.models.registry import rebuild_detector

FORMAT = "kdmed-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    detector: Detector
    metadata: dict[str, Any]

    @property
    def method(self) -> str:
        return self.metadata["method"]

    @property
    def threshold(self) -> float:
        return float(self.metadata["calibration"]["threshold"])


def save_checkpoint(path: str | Path, detector: Detector, metadata: dict[str, Any]) -> None:
    """Write weights + metadata atomically; `metadata` must be JSON-serialisable."""
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": detector.method,
        "architecture": detector.architecture,
        **metadata,
    }
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in detector.state_dict().items()}
    with atomic.atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"kdmed": json.dumps(header)})


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Only the header (fast; used to list models in the app)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size <= 0 or size > 100_000_000:
                raise ValueError(f"implausible header size {size}")
            header = json.loads(handle.read(size))
        metadata = json.loads(header["__metadata__"]["kdmed"])
    except FileNotFoundError as error:
        raise CheckpointError(f"checkpoint '{path}' does not exist; train one with `dvc repro`.") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"'{path}' is not a kdmed checkpoint (unreadable header: {error}).") from error
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' has format {metadata.get('format')!r} v{metadata.get('format_version')}; this kdmed reads "
            f"{FORMAT!r} v{FORMAT_VERSION}. Retrain with `dvc repro` or use the matching kdmed version."
        )
    return metadata


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the detector from the header and load its weights strictly."""
    metadata = read_metadata(path)
    detector = rebuild_detector(metadata["method"], metadata["architecture"])
    try:
        state = load_file(str(path), device="cpu")
        detector.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise CheckpointError(
            f"weights in '{path}' do not match its architecture or are corrupt: {error}"
        ) from error
    detector.to(device)
    detector.eval()
    return Checkpoint(detector=detector, metadata=metadata)


def list_checkpoints(models_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable checkpoint under `models_dir` with its header, newest first; unreadable ones skipped."""
    found = []
    for path in sorted(Path(models_dir).glob("**/*.safetensors")):
        try:
            found.append((path, read_metadata(path)))
        except CheckpointError:
            continue
    return sorted(found, key=lambda item: item[1].get("training", {}).get("trained_at", ""), reverse=True)
