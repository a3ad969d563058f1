"""Teacher and student feature extractors with declared feature metadata.

Every backbone declares its tappable layers up front (``FeatureInfo``: name, channels, stride relative to
the input, in forward order), as timm does, so methods size their own layers from metadata and never from
a dummy forward or hard-coded indices. Layer names:
- ``resnet18``, ``wide_resnet50_2`` (torchvision): ``stem`` (after the max-pool), ``layer1..layer4``;
- ``vgg16`` (torchvision ``features``): ``pool1..pool5``, the outputs of the five max-pools (MKD taps
  pool2..pool5);
- ``efficientnet_lite0`` (kdmed.models.efficientnet_lite): ``stem``, ``stage1..stage7``, ``head``.

``FeatureExtractor`` keeps only the modules needed up to the deepest requested layer (no ``layer4``, ``fc``
or ``classifier`` when they are not tapped) and applies the backbone's input normalisation in
``normalize``. A teacher is frozen with ``set_frozen``: it then stays in eval mode even when the model
around it is put in train mode (BatchNorm statistics of a pretrained teacher must never move).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from kdmed.errors import ConfigError
from kdmed.models import efficientnet_lite as lite
from kdmed.models.weights import IMAGENET_FILES, load_weights, resolve_weight_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite0 expects (pixel - 127) / 128 on 0..255 pixels, i.e. (x - 127/255) / (128/255) on [0, 1].
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class FeatureInfo:
    """One tappable layer: its name, channel count and stride relative to the input."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class BackboneSpec:
    """Static description of a backbone: tappable layers in forward order and input normalisation."""

    name: str
    layers: tuple[FeatureInfo, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weight_file: str  # the ImageNet file name (see kdmed.models.weights)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(info.name for info in self.layers)

    def layer(self, name: str) -> FeatureInfo:
        for info in self.layers:
            if info.name == name:
                return info
        raise ConfigError(
            f"unknown layer {name!r} for backbone {self.name!r}; valid layers: {', '.join(self.layer_names)}"
        )


def _infos(names: Sequence[str], channels: Sequence[int], strides: Sequence[int]) -> tuple[FeatureInfo, ...]:
    return tuple(FeatureInfo(n, c, s) for n, c, s in zip(names, channels, strides, strict=True))


_RESNET_LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4")
_RESNET_STRIDES = (4, 4, 8, 16, 32)

_SPECS: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "resnet18",
            _infos(_RESNET_LAYERS, (64, 64, 128, 256, 512), _RESNET_STRIDES),
            IMAGENET_MEAN,
            IMAGENET_STD,
            IMAGENET_FILES["resnet18"].file_name,
        ),
        BackboneSpec(
            "wide_resnet50_2",
            _infos(_RESNET_LAYERS, (64, 256, 512, 1024, 2048), _RESNET_STRIDES),
            IMAGENET_MEAN,
            IMAGENET_STD,
            IMAGENET_FILES["wide_resnet50_2"].file_name,
        ),
        BackboneSpec(
            "vgg16",
            _infos([f"pool{i}" for i in range(1, 6)], (64, 128, 256, 512, 512), (2, 4, 8, 16, 32)),
            IMAGENET_MEAN,
            IMAGENET_STD,
            IMAGENET_FILES["vgg16"].file_name,
        ),
        BackboneSpec(
            "efficientnet_lite0",
            _infos(lite.STAGE_NAMES, lite.STAGE_CHANNELS, lite.STAGE_STRIDES),
            LITE_MEAN,
            LITE_STD,
            IMAGENET_FILES["efficientnet_lite0"].file_name,
        ),
    )
}


def available_backbones() -> tuple[str, ...]:
    return tuple(_SPECS)


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(_SPECS)}") from None


def layers_at_strides(name: str, strides: Sequence[int]) -> tuple[str, ...]:
    """The deepest layer at each requested stride, e.g. resnet18 (4, 8, 16) -> layer1, layer2, layer3."""
    spec = backbone_spec(name)
    deepest = {info.stride: info.name for info in spec.layers}  # later layers overwrite earlier ones
    missing = [s for s in strides if s not in deepest]
    if missing:
        raise ConfigError(
            f"backbone {name!r} has no layer at stride {missing}; available strides: {sorted(deepest)}"
        )
    return tuple(deepest[s] for s in strides)


def _build_full(name: str) -> nn.Module:
    """The whole network with random initialisation (torchvision's default init for torchvision models)."""
    if name == "efficientnet_lite0":
        return lite.EfficientNetLite0()
    import torchvision  # only for the torchvision backbones: its import costs about 1.2 s per process

    return getattr(torchvision.models, name)(weights=None)


def _split(name: str, model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Cut a full network into consecutive steps, one per tappable layer, keeping parameter names."""
    if name in ("resnet18", "wide_resnet50_2"):
        stem = nn.Sequential(
            OrderedDict(conv1=model.conv1, bn1=model.bn1, relu=model.relu, maxpool=model.maxpool)
        )
        return [("stem", stem)] + [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
    if name == "vgg16":
        steps, start = [], 0
        for idx, module in enumerate(model.features):
            if isinstance(module, nn.MaxPool2d):
                # Slicing an nn.Sequential keeps the original indices as names ("5.weight").
                steps.append((f"pool{len(steps) + 1}", model.features[start : idx + 1]))
                start = idx + 1
        return steps
    if name == "efficientnet_lite0":
        steps = [
            ("stem", nn.Sequential(OrderedDict(_conv_stem=model._conv_stem, _bn0=model._bn0, act=nn.ReLU6())))
        ]
        for i, (start, end) in enumerate(lite.stage_block_ranges(), start=1):
            blocks = OrderedDict((str(j), model._blocks[j]) for j in range(start, end))
            steps.append((f"stage{i}", nn.Sequential(blocks)))
        steps.append(
            ("head", nn.Sequential(OrderedDict(_conv_head=model._conv_head, _bn1=model._bn1, act=nn.ReLU6())))
        )
        return steps
    raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(_SPECS)}")


class FeatureExtractor(nn.Module):
    """Named feature maps of a backbone, computed only as deep as the deepest requested layer.

    ``weights``: ``"imagenet"``, ``"random"`` or a path to a full-model state dict (see
    kdmed.models.weights); the state dict is loaded strictly before truncation. ``forward`` takes input
    already passed through ``normalize`` and returns ``{layer: tensor}`` in request order.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        weights: str | os.PathLike[str] = "imagenet",
        frozen: bool = False,
    ) -> None:
        super().__init__()
        spec = backbone_spec(backbone)
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        if not layers:
            raise ConfigError(
                f"no layers requested for {backbone!r}; valid layers: {', '.join(spec.layer_names)}"
            )
        dupes = sorted({n for n in layers if layers.count(n) > 1})
        if dupes:
            raise ConfigError(f"layers {dupes} requested more than once for {backbone!r}")
        self.feature_info: tuple[FeatureInfo, ...] = tuple(spec.layer(n) for n in layers)

        weight_file = resolve_weight_file(backbone, weights)
        model = _build_full(backbone)
        if weight_file is not None:
            load_weights(model, weight_file, backbone)
        deepest = max(spec.layer_names.index(n) for n in layers)
        self.stages = nn.ModuleDict(_split(backbone, model)[: deepest + 1])

        self.backbone = backbone
        self.layers = layers
        self.weights_source = str(weight_file) if weight_file is not None else "random"
        # Buffers move with .to(device) / .half(); not persistent, so state dicts hold only weights.
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.frozen = False
        if frozen:
            self.freeze()

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(info.channels for info in self.feature_info)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(info.stride for info in self.feature_info)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Backbone input normalisation of ``(B, 3, H, W)`` RGB values in ``[0, 1]``."""
        return (x01 - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = set(self.layers)
        found: dict[str, torch.Tensor] = {}
        for name, stage in self.stages.items():
            x = stage(x)
            if name in wanted:
                found[name] = x
        return {name: found[name] for name in self.layers}

    def freeze(self) -> FeatureExtractor:
        """No gradients to the weights, eval mode now and after any later ``train()`` call."""
        self.frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        # A frozen teacher ignores train(True), including the one its parent model propagates.
        return super().train(mode and not self.frozen)

    def extra_repr(self) -> str:
        return (
            f"backbone={self.backbone!r}, layers={self.layers}, "
            f"weights={self.weights_source!r}, frozen={self.frozen}"
        )


def set_frozen(module: nn.Module) -> nn.Module:
    """Freeze a teacher: ``requires_grad=False`` and eval mode.

    A ``FeatureExtractor`` also remembers it and stays in eval mode through later ``train()`` calls; any
    other module is only put in eval mode now, so prefer freezing the ``FeatureExtractor`` itself.
    """
    if isinstance(module, FeatureExtractor):
        return module.freeze()
    module.requires_grad_(False)
    return module.eval()
