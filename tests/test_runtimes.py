"""`common.runtime: onnx` / `--runtime onnx`: ONNX Runtime gives the torch maps and scores, for every
method, through `kdmed score` and the evaluate stage's `predict_images`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_models import nifti_bytes, write_checkpoint

from kdmed.checkpoint import load_checkpoint
from kdmed.config import MkdConfig, Rd4adConfig, StpmConfig
from kdmed.errors import ConfigError
from kdmed.inference import predict_images
from kdmed.models.mkd import MKD
from kdmed.models.rd4ad import RD4AD
from kdmed.models.stpm import STPM
from kdmed.runtimes import with_runtime
from kdmed.runtimes.onnx_detector import OnnxDetector
from kdmed.runtimes.onnx_export import cached_export, export
from kdmed.score import score_source

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'kdmed[onnx]')")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KDMED_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "detector",
    [
        lambda: STPM(StpmConfig(backbone="resnet18", weights="random"), teacher_weights="random"),
        pytest.param(
            lambda: RD4AD(Rd4adConfig(backbone="resnet18", weights="random"), teacher_weights="random"),
            marks=pytest.mark.slow,
        ),
        lambda: MKD(
            MkdConfig(backbone="resnet18", weights="random", map="discrepancy"), teacher_weights="random"
        ),
        pytest.param(
            lambda: MKD(
                MkdConfig(backbone="resnet18", weights="random", map="gradient"), teacher_weights="random"
            ),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["stpm", "rd4ad", "mkd-discrepancy", "mkd-gradient"],
)
def test_onnx_maps_and_scores_equal_torch(detector, tmp_path):
    torch.manual_seed(0)
    model = detector().eval()
    export(model, tmp_path / "m.onnx", 64)
    fast = OnnxDetector(model, tmp_path / "m.onnx", threads=1)
    images = (torch.rand(5, 3, 64, 64) * 255).to(torch.uint8)  # 5: a batch size the export never saw
    expected, got = predict_images(model, images, 4), predict_images(fast, images, 4)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        got.maps, expected.maps, rtol=1e-4, atol=1e-4 * float(np.abs(expected.maps).max())
    )
    assert fast.method == model.method and fast.teacher is model.teacher  # everything else is torch's


def test_kdmed_score_with_onnx_matches_torch_and_exports_once(tmp_path):
    model = write_checkpoint(tmp_path / "model.safetensors", "volume")
    study = tmp_path / "study.nii"
    study.write_bytes(nifti_bytes())
    torch_report = score_source(study, model)
    onnx_report = score_source(study, model, runtime="onnx")
    assert onnx_report["study_flagged"] == torch_report["study_flagged"]
    assert onnx_report["study_score"] == pytest.approx(torch_report["study_score"], rel=1e-4)
    for a, b in zip(torch_report["slices"], onnx_report["slices"], strict=True):
        assert a["flagged"] == b["flagged"]
    exports = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(exports) == 1
    checkpoint = load_checkpoint(model)
    assert cached_export(model, checkpoint.detector, 64, 3) == exports[0]  # reused, not exported again


def test_unknown_runtime_is_a_clear_error(tmp_path):
    model = write_checkpoint(tmp_path / "model.safetensors", "image")
    with pytest.raises(ConfigError, match="torch or onnx"):
        with_runtime(load_checkpoint(model), "tensorrt", model)


def test_openvino_fp32_equals_torch_and_bf16_stays_close(tmp_path):
    """OpenVINO fp32 gives the torch answers; bf16 (where the CPU has it) keeps the maps' ranking. The
    demo models' bf16 accuracy is measured by `scripts/check_runtime.py openvino-bf16` (README)."""
    pytest.importorskip(
        "openvino", reason="the openvino extra is not installed (pip install 'kdmed[openvino]')"
    )
    from scipy.stats import spearmanr

    from kdmed.runtimes.openvino_detector import OpenVinoDetector, cpu_supports_bf16

    torch.manual_seed(0)
    model = STPM(StpmConfig(backbone="resnet18", weights="random"), teacher_weights="random").eval()
    export(model, tmp_path / "m.onnx", 64)
    images = (torch.rand(5, 3, 64, 64) * 255).to(torch.uint8)
    expected = predict_images(model, images, 4)
    f32 = predict_images(OpenVinoDetector(model, tmp_path / "m.onnx", 1, "f32"), images, 4)
    np.testing.assert_allclose(f32.scores, expected.scores, rtol=1e-3)
    np.testing.assert_allclose(
        f32.maps, expected.maps, rtol=1e-3, atol=1e-3 * float(np.abs(expected.maps).max())
    )
    if not cpu_supports_bf16():
        with pytest.raises(ConfigError, match="AVX512-BF16 or AMX"):
            OpenVinoDetector(model, tmp_path / "m.onnx", 1, "bf16")
        return
    bf16 = predict_images(OpenVinoDetector(model, tmp_path / "m.onnx", 1, "bf16"), images, 4)
    for a, b in zip(expected.maps, bf16.maps, strict=True):
        assert spearmanr(a.ravel(), b.ravel()).statistic > 0.9
    np.testing.assert_allclose(bf16.scores, expected.scores, rtol=0.1)


def test_kdmed_score_runs_on_openvino(tmp_path):
    pytest.importorskip(
        "openvino", reason="the openvino extra is not installed (pip install 'kdmed[openvino]')"
    )
    model = write_checkpoint(tmp_path / "model.safetensors", "volume")
    study = tmp_path / "study.nii"
    study.write_bytes(nifti_bytes())
    torch_report = score_source(study, model)
    report = score_source(study, model, runtime="openvino")
    assert report["study_score"] == pytest.approx(torch_report["study_score"], rel=1e-3)
