"""A detector whose `predict` runs the exported ONNX graph in OpenVINO, in fp32 or bf16.

`OpenVinoDetector` is `kdmed.runtimes.onnx_detector.OnnxDetector` with Intel's OpenVINO CPU plugin in
place of ONNX Runtime. `precision` "f32" gives ONNX Runtime's answers at about its speed; "bf16" runs
the convolutions in bfloat16 on CPUs with AVX512-BF16 or AMX (fp32 accumulation, fp32 inputs and
outputs), about 1.8x faster on this project's CPU. bf16 is served only behind the accuracy check
`scripts/check_runtime.py` (map rank agreement and image AUROC against torch on the test splits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdmed.errors import ConfigError
from kdmed.runtimes.onnx_detector import OnnxDetector

__all__ = ["PRECISIONS", "OpenVinoDetector", "cpu_supports_bf16"]

PRECISIONS = ("f32", "bf16")


def cpu_supports_bf16() -> bool:
    """True where OpenVINO's CPU plugin can run bf16 natively (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoDetector(OnnxDetector):
    """`torch_detector`'s scoring forward compiled by OpenVINO for the CPU at `precision`."""

    def __init__(self, torch_detector, graph: str | Path, threads: int = 0, precision: str = "f32") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"OpenVINO precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.precision = precision
        super().__init__(torch_detector, graph, threads)

    def _open(self, graph: str | Path, threads: int):
        import openvino as ov

        core = ov.Core()
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ConfigError(
                "runtime 'openvino-bf16' needs a CPU with AVX512-BF16 or AMX, and this one has neither; "
                "use runtime openvino or onnx"
            )
        config = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        return core.compile_model(core.read_model(str(graph)), "CPU", config)

    def _outputs(self, array: np.ndarray, names: list[str]) -> list[np.ndarray]:
        results = self._session.create_infer_request().infer({0: array})
        return [np.array(results[self._session.output(name)], dtype=np.float32) for name in names]
