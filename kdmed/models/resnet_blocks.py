"""ResNet building blocks for RD4AD's one-class bottleneck and its reverse (up-sampling) decoder.

The encoder-direction blocks are torchvision's `BasicBlock` and `Bottleneck` (the official RD4AD code
builds its bottleneck stage from them), written out here with the same parameter names, order and
forward, so that importing this module does not import torchvision (about 1.2 s at every stage start;
`tests/test_resnet_blocks.py` checks them against torchvision's). The decoder blocks mirror them (Deng and Li,
CVPR 2022, Sec. 3.2): a block that changes resolution replaces its stride-2 3x3 convolution by a 2x2
stride-2 transposed convolution, and its shortcut by a transposed convolution plus BatchNorm.
"""

from __future__ import annotations

from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: 3x3 (strided) + 3x3, with an optional projection `downsample`."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet V1.5 bottleneck: 1x1, 3x3 (strided), 1x1 to `planes * 4`; inner width
    `planes * base_width / 64` (Wide-ResNet-50-2: base width 128)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 64,
    ):
        super().__init__()
        width = int(planes * base_width / 64)
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def upconv(in_channels: int, out_channels: int, factor: int) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies the resolution by `factor` (2x2 stride 2 for factor 2)."""
    return nn.ConvTranspose2d(in_channels, out_channels, factor, stride=factor, bias=False)


def bottleneck_base_width(out_channels: int, width_ratio: float) -> int:
    """torchvision's `base_width` giving an inner width of `width_ratio * out_channels` (expansion 4):
    0.5 is Wide-ResNet-50-2 (`width_per_group` 128), 0.25 a plain ResNet-50."""
    return round(64 * width_ratio * 4)


class DeBasicBlock(nn.Module):
    """BasicBlock whose first convolution up-samples by `factor` (a transposed conv) when factor > 1."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, factor: int = 1, shortcut: nn.Module | None = None):
        super().__init__()
        self.conv1 = upconv(in_channels, planes, factor) if factor > 1 else conv3x3(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DeBottleneck(nn.Module):
    """Bottleneck (1x1, 3x3 or 2x2 transposed, 1x1) with output `planes * 4`."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        factor: int = 1,
        shortcut: nn.Module | None = None,
        base_width: int = 64,
    ):
        super().__init__()
        width = int(planes * base_width / 64)
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = upconv(width, width, factor) if factor > 1 else conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _planes(out_channels: int, expansion: int, what: str) -> int:
    if out_channels % expansion:
        raise ValueError(f"{what}: {out_channels} output channels are not divisible by {expansion}")
    return out_channels // expansion


def encoder_stage(
    block: str, in_channels: int, out_channels: int, blocks: int, stride: int, width_ratio: float
) -> nn.Sequential:
    """A torchvision ResNet stage (first block strided, 1x1 strided projection shortcut)."""
    kind = Bottleneck if block == "bottleneck" else BasicBlock
    planes = _planes(out_channels, kind.expansion, "bottleneck stage")
    extra = {"base_width": bottleneck_base_width(out_channels, width_ratio)} if kind is Bottleneck else {}
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    layers = [kind(in_channels, planes, stride, downsample, **extra)]
    layers += [kind(out_channels, planes, **extra) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def decoder_stage(
    block: str, in_channels: int, out_channels: int, blocks: int, factor: int, width_ratio: float
) -> nn.Sequential:
    """A mirrored ResNet stage whose first block up-samples by `factor`."""
    kind = DeBottleneck if block == "bottleneck" else DeBasicBlock
    planes = _planes(out_channels, kind.expansion, "decoder stage")
    extra = {"base_width": bottleneck_base_width(out_channels, width_ratio)} if kind is DeBottleneck else {}
    shortcut = None
    if factor > 1:
        shortcut = nn.Sequential(upconv(in_channels, out_channels, factor), nn.BatchNorm2d(out_channels))
    elif in_channels != out_channels:
        shortcut = nn.Sequential(conv1x1(in_channels, out_channels), nn.BatchNorm2d(out_channels))
    layers = [kind(in_channels, planes, factor, shortcut, **extra)]
    layers += [kind(out_channels, planes, **extra) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_like_official(module: nn.Module) -> None:
    """torchvision ResNet init, as the official RD4AD code applies it: Kaiming-normal (fan-out) for
    `nn.Conv2d`, BatchNorm weight 1 and bias 0; transposed convolutions keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
