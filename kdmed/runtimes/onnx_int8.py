"""INT8 static quantisation of an exported scoring graph (ONNX Runtime), an option behind checks.

Only the convolutions are quantised (weights per output channel, activations per tensor, calibrated on
normal images by their min-max range): the map arithmetic (distances, up-sampling, blur, products) stays
in float, so the maps keep their resolution. On CPUs with VNNI this runs the backbones' convolutions as
8-bit integer products.

It is used only when it keeps the answers: `agreement` measures map rank agreement (Spearman, per image)
and the image AUROC against the float graph, and `scripts/check_runtime.py onnx-int8` requires Spearman >= 0.99 and an
AUROC change under 0.5 points on the demo test splits before the README recommends it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdmed import atomic
from kdmed.runtimes.onnx_export import INPUT

__all__ = ["quantize"]


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over float images in [0, 1], a few per call."""

    def __init__(self, images: np.ndarray, batch: int = 8) -> None:
        self.batches = iter([images[i : i + batch] for i in range(0, len(images), batch)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {INPUT: np.ascontiguousarray(batch, np.float32)}

    def rewind(self) -> None:  # pragma: no cover - ONNX Runtime calls it only for some methods
        pass


def quantize(float_graph: str | Path, out: str | Path, calibration_images: np.ndarray) -> Path:
    """Write the INT8 version of `float_graph` to `out`, calibrated on `calibration_images` (N, 3, S, S)
    float32 in [0, 1], normal images of the training distribution."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration_images.ndim != 4 or calibration_images.shape[1] != 3 or len(calibration_images) < 8:
        raise ValueError(
            f"calibration images must be (N >= 8, 3, S, S) in [0, 1], got {calibration_images.shape}"
        )
    with atomic.atomic_path(out, suffix=".onnx") as tmp:
        prepared = Path(str(tmp) + ".pre.onnx")
        try:
            quant_pre_process(str(float_graph), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(tmp),
                _Calibration(calibration_images),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            prepared.unlink(missing_ok=True)
    return Path(out)
