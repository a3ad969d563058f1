"""Method name -> detector class: the only place that knows which methods exist."""

from __future__ import annotations

from typing import Any

from kdmed.errors import CheckpointError, ConfigError
from kdmed.models.base import Detector
from kdmed.models.mkd import MKD
from kdmed.models.rd4ad import RD4AD
from kdmed.models.stpm import STPM

DETECTORS: dict[str, type[Detector]] = {"stpm": STPM, "rd4ad": RD4AD, "mkd": MKD}


def detector_class(method: str) -> type[Detector]:
    if method not in DETECTORS:
        raise ConfigError(f"unknown method {method!r}; implemented methods: {', '.join(DETECTORS)}.")
    return DETECTORS[method]


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
