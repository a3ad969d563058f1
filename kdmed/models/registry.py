"""Method name -> detector class: the only place that lists the methods.

Each detector class carries its name (`method`) and its settings dataclass (`settings`, from
`kdmed.config`, whose defaults are the official code's, paper teacher included). `kdmed.config` sits below
the models and cannot import this list; its `methods:` section must name the same methods, which
tests/test_architecture.py checks.
"""

from __future__ import annotations

from typing import Any

from kdmed.errors import CheckpointError, ConfigError
from kdmed.models.base import Detector
from kdmed.models.mkd import LITE0_CRITICAL_POINTS, MKD
from kdmed.models.rd4ad import RD4AD
from kdmed.models.stpm import STPM

DETECTORS: dict[str, type[Detector]] = {cls.method: cls for cls in (STPM, RD4AD, MKD)}
METHOD_NAMES: tuple[str, ...] = tuple(DETECTORS)


def detector_class(method: str) -> type[Detector]:
    if method not in DETECTORS:
        raise ConfigError(f"unknown method {method!r}; implemented methods: {', '.join(DETECTORS)}.")
    return DETECTORS[method]


def paper_backbone(method: str) -> str:
    """The teacher of the method's paper (STPM ResNet-18, RD4AD Wide-ResNet-50-2, MKD VGG-16)."""
    return detector_class(method).settings().backbone


def default_config(method: str, backbone: str | None = None, weights: str = "imagenet") -> Any:
    """The method's default settings with another teacher (None: the paper's). MKD on EfficientNet-Lite0
    taps `LITE0_CRITICAL_POINTS`, as params.yaml does."""
    backbone = backbone or paper_backbone(method)
    extra = {"layers": LITE0_CRITICAL_POINTS} if method == "mkd" and backbone == "efficientnet_lite0" else {}
    return detector_class(method).settings(backbone=backbone, weights=weights, **extra)


def build_detector(method: str, config: Any) -> Detector:
    """A new detector for training: pretrained frozen teacher, freshly initialised student."""
    return detector_class(method)(config)


def rebuild_detector(method: str, architecture: dict[str, Any]) -> Detector:
    """The network described by a checkpoint's architecture record, ready for `load_state_dict`."""
    try:
        return detector_class(method).from_architecture(architecture)
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(
            f"checkpoint architecture {architecture} is incomplete for {method!r}: {error}"
        ) from error
