"""A detector whose `predict` runs in ONNX Runtime: the same maps and scores as torch, faster on CPUs.

`OnnxDetector` wraps the loaded torch detector: `predict` and `selection_scores` run the exported graph
(`kdmed.runtimes.onnx_export`) in an `onnxruntime.InferenceSession` (all graph optimisations on:
BatchNorm folded into convolutions, activations fused, NCHWc layouts chosen by ORT), and everything else
(the teacher for Captum, the architecture, the method name) is the torch detector's. MKD with gradient
maps gets its scores from the graph and its maps from torch autograd.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdmed.models.base import Detector, Prediction
from kdmed.runtimes.onnx_export import MAPS, SCORES, graph_has_maps

__all__ = ["OnnxDetector", "session"]


def session(path: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session for `path`; `threads` 0: torch's thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxDetector(torch.nn.Module):
    """`torch_detector`'s scoring forward through ONNX Runtime; every other attribute is the torch one's."""

    def __init__(self, torch_detector: Detector, graph: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.torch_detector = torch_detector
        self.graph_path = str(graph)
        self.has_maps = graph_has_maps(torch_detector)
        self._session = self._open(graph, threads)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["torch_detector"], name)

    def _open(self, graph: str | Path, threads: int):
        return session(graph, threads)

    def _outputs(self, array: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return self._session.run(names, {self._session.get_inputs()[0].name: array})

    def _run(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        array = np.ascontiguousarray(x01.detach().float().cpu().numpy())
        names = [MAPS, SCORES] if self.has_maps else [SCORES]
        outputs = self._outputs(array, names)
        return {name: torch.from_numpy(np.asarray(value)) for name, value in zip(names, outputs, strict=True)}

    def predict(self, x01: torch.Tensor) -> Prediction:
        out = self._run(x01)
        maps = out[MAPS] if self.has_maps else self.torch_detector.predict(x01).maps
        return Prediction(maps=maps.to(x01.device), scores=out[SCORES].to(x01.device))

    def selection_scores(self, x01: torch.Tensor) -> torch.Tensor:
        """MKD's detection score, the other methods' mean map value (as the torch detectors)."""
        out = self._run(x01)
        values = out[SCORES] if self.torch_detector.method == "mkd" else out[MAPS].flatten(1).mean(dim=1)
        return values.to(x01.device)
