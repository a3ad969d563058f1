"""Model checkpoints: one `.safetensors` file holding the weights and, in its header, the typed
`kdmed.contract.CheckpointHeader` (model card, serving contract, architecture, training record). No
pickle: loading cannot run code. This is the only module that reads the header's JSON; everything else
reads attributes of the dataclasses.

Format history: v1 (before the serving contract) stored a free dict without the slice policy, the study
aggregation or the normal map level; those cannot be recovered from the weights, so v1 files are refused
with the command that retrains them (`upgrade_header`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from kdmed import atomic
from kdmed.config_schema import build, to_plain
from kdmed.contract import CheckpointHeader, ServingContract
from kdmed.errors import CheckpointError, ConfigError
from kdmed.models.base import Detector
from kdmed.models.registry import rebuild_detector

FORMAT = "kdmed-checkpoint"
FORMAT_VERSION = 2
_RETRAIN = "retrain it with `dvc repro` (or `kdmed train --dataset D --method M`)"


@dataclass(frozen=True)
class Checkpoint:
    detector: Detector
    header: CheckpointHeader

    @property
    def method(self) -> str:
        return self.header.card.method

    @property
    def serving(self) -> ServingContract:
        return self.header.serving

    @property
    def threshold(self) -> float:
        return self.header.serving.calibration.threshold


def save_checkpoint(path: str | Path, detector: Detector, header: CheckpointHeader) -> None:
    """Write weights + header atomically; the header must describe this detector."""
    if header.card.method != detector.method or dict(header.architecture) != detector.architecture:
        raise CheckpointError(
            f"the header describes a {header.card.method} model with architecture {dict(header.architecture)}, "
            f"but the weights are a {detector.method} with {detector.architecture}; build the header from "
            "the detector being saved"
        )
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "header": to_plain(header)}
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in detector.state_dict().items()}
    with atomic.atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"kdmed": json.dumps(payload)})


def read_header(path: str | Path) -> CheckpointHeader:
    """Only the header (fast; used to list models in the app), validated field by field."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist; train one with `dvc repro`.")
    try:
        # safetensors validates the header (length, JSON, tensor offsets covering the whole file), so a
        # truncated or corrupt file fails here, before any weight is read.
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"'{path}' is not a kdmed checkpoint (unreadable safetensors header: {error}); it may be "
            f"truncated or corrupt: copy it again, or {_RETRAIN}."
        ) from error
    if not metadata or "kdmed" not in metadata:
        raise CheckpointError(
            f"'{path}' is not a kdmed checkpoint (a safetensors file without a 'kdmed' header); {_RETRAIN}."
        )
    try:
        payload = json.loads(metadata["kdmed"])
    except ValueError as error:
        raise CheckpointError(
            f"'{path}' is not a kdmed checkpoint (its 'kdmed' header is not JSON: {error})."
        ) from error
    return upgrade_header(path, payload)


def upgrade_header(path: str | Path, payload: Any) -> CheckpointHeader:
    """The one place older headers are handled: the current version is parsed, v1 is refused (it lacks
    the slice policy, study aggregation and normal map level, which only a new calibration can set)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a kdmed checkpoint (no '{FORMAT}' header).")
    version = payload.get("format_version")
    if version == 1:
        raise CheckpointError(
            f"'{path}' is a v1 kdmed checkpoint, written before the serving contract: it does not record "
            f"the slice policy, the study aggregation or the normal map level that scoring needs; {_RETRAIN}."
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' has format {FORMAT!r} v{version}; this kdmed reads v{FORMAT_VERSION}. Use the kdmed "
            f"version that wrote it, or {_RETRAIN}."
        )
    try:
        return build(CheckpointHeader, payload.get("header"), "header")
    except ConfigError as error:
        message = str(error).removeprefix("params: ")
        raise CheckpointError(f"'{path}': invalid checkpoint header: {message}; {_RETRAIN}.") from error


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the detector from the header and load its weights strictly."""
    header = read_header(path)
    detector = rebuild_detector(header.card.method, dict(header.architecture))
    try:
        state = load_file(str(path), device="cpu")
        detector.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise CheckpointError(
            f"weights in '{path}' do not match its architecture or are corrupt: {error}"
        ) from error
    detector.to(device)
    detector.eval()
    return Checkpoint(detector=detector, header=header)


def list_checkpoints(models_dir: str | Path) -> list[tuple[Path, CheckpointHeader]]:
    """Every readable checkpoint under `models_dir` with its header, newest first; unreadable ones skipped."""
    found = []
    for path in sorted(Path(models_dir).glob("**/*.safetensors")):
        try:
            found.append((path, read_header(path)))
        except CheckpointError:
            continue
    return sorted(found, key=lambda item: item[1].card.trained_at, reverse=True)


def catalogue_signature(models_dir: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every checkpoint file: cheap to compute, changes whenever a model does (the
    app re-reads headers only when it changes)."""
    out = []
    for path in sorted(Path(models_dir).glob("**/*.safetensors")):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)
