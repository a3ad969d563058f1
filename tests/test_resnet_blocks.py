"""kdmed's own ResNet blocks match torchvision's (names, shapes, forward), and the stages that train and
score import neither torchvision, MONAI nor Captum at start-up (each costs 0.4-1.6 s per DVC stage)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from torchvision.models import resnet as tv

from kdmed.models import resnet_blocks as ours


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(ours.conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


@pytest.mark.parametrize(
    ("kind", "in_channels", "planes", "stride", "extra"),
    [
        ("BasicBlock", 16, 32, 2, {}),
        ("BasicBlock", 32, 32, 1, {}),
        ("Bottleneck", 64, 16, 2, {"base_width": 128}),
        ("Bottleneck", 64, 16, 1, {}),
    ],
)
def test_blocks_match_torchvision(kind, in_channels, planes, stride, extra):
    out_channels = planes * getattr(ours, kind).expansion
    needs_projection = stride != 1 or in_channels != out_channels

    def build(module):
        downsample = _projection(in_channels, out_channels, stride) if needs_projection else None
        return getattr(module, kind)(in_channels, planes, stride, downsample, **extra).eval()

    torch.manual_seed(0)
    reference, mine = build(tv), build(ours)
    theirs, own = reference.state_dict(), mine.state_dict()
    assert list(own) == list(theirs)
    assert all(own[key].shape == theirs[key].shape for key in own)
    with torch.no_grad():  # different BatchNorm statistics, so that a wrong wiring shows
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    mine.load_state_dict(reference.state_dict())
    x = torch.randn(2, in_channels, 16, 16)
    torch.testing.assert_close(mine(x), reference(x))


def test_stage_imports_stay_light():
    code = (
        "import sys, kdmed.train, kdmed.evaluate, kdmed.checkpoint; "
        "print(sorted(m for m in ('torchvision', 'monai', 'captum') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
