"""Where a checkpoint's scoring forward runs: `torch` (eager PyTorch), `onnx` (ONNX Runtime), `openvino`
(OpenVINO fp32) or `openvino-bf16` (OpenVINO bfloat16, on CPUs with AVX512-BF16 or AMX).

    checkpoint = with_runtime(load_checkpoint(path), "onnx", path)   # same maps and scores, faster on CPU

`common.runtime` in params.yaml picks it for the evaluate stage; `kdmed score --runtime`, `kdmed
score-archive --runtime` for serving. Training always runs in torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kdmed.errors import ConfigError

__all__ = ["RUNTIMES", "with_runtime"]

RUNTIMES = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")


def with_runtime(checkpoint, runtime: str, path: str | Path, threads: int = 0, calibration=None):
    """`checkpoint` scoring in `runtime`: torch (on the CPU, a copy with BatchNorm folded into the
    convolutions and channels_last, `kdmed.runtimes.torch_fold`), onnx (its export in ONNX Runtime, cached
    by the file's content), onnx-int8 (that export quantised, `kdmed.runtimes.onnx_int8`, calibrated on
    `calibration`: normal images (N, 3, S, S) in [0, 1], needed the first time only), or openvino /
    openvino-bf16 (the same export compiled by OpenVINO in fp32 / bf16,
    `kdmed.runtimes.openvino_detector`). Every attribute other than the scoring forward is the
    checkpoint's own."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}; use torch or onnx")
    detector = checkpoint.detector
    size = checkpoint.serving.preprocessing.image_size
    if runtime == "torch":
        if next(detector.parameters()).device.type != "cpu":
            return checkpoint
        from kdmed.runtimes.torch_fold import for_inference

        return dataclasses.replace(checkpoint, detector=for_inference(detector, size))
    _require(runtime)
    from kdmed.runtimes.onnx_detector import OnnxDetector
    from kdmed.runtimes.onnx_export import cached_export

    graph = cached_export(path, detector, size, 3)
    if runtime.startswith("openvino"):
        from kdmed.runtimes.openvino_detector import OpenVinoDetector

        precision = "bf16" if runtime.endswith("bf16") else "f32"
        return dataclasses.replace(checkpoint, detector=OpenVinoDetector(detector, graph, threads, precision))
    if runtime == "onnx-int8":
        graph = _int8(graph, calibration, path)
    return dataclasses.replace(checkpoint, detector=OnnxDetector(detector, graph, threads))


def _require(runtime: str) -> None:
    modules = ["onnx", "onnxruntime"] + (["openvino"] if runtime.startswith("openvino") else [])
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(
                f"runtime {runtime!r} needs {module}: pip install 'kdmed[onnx]' (or use runtime torch)"
            ) from None


def _int8(graph: Path, calibration, path) -> Path:
    from kdmed.runtimes.onnx_int8 import quantize

    int8 = graph.with_name(graph.stem + "-int8.onnx")
    if int8.is_file():
        return int8
    if calibration is None:
        raise ConfigError(
            f"runtime 'onnx-int8' for {path} needs calibration on normal images the first time; run the "
            "evaluate stage with common.runtime=onnx-int8 (it calibrates on the validation normals), "
            "or use runtime onnx"
        )
    return quantize(graph, int8, calibration)
