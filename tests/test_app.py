"""The review app driven headlessly with Streamlit's AppTest (smoke level; the full review flow is tested
with issue 7's features)."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from kdmed.checkpoint import save_checkpoint
from kdmed.config import DatasetConfig, PreprocessConfig, StpmConfig
from kdmed.config_schema import to_plain
from kdmed.models.stpm import STPM

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def write_model(models: Path, kind: str) -> None:
    torch.manual_seed(0)
    detector = STPM(StpmConfig(backbone="resnet18", weights="random"))
    dataset = DatasetConfig(
        adapter="brats" if kind == "volume" else "bmad", root=".", slice_range=None, min_foreground_pixels=50
    )
    save_checkpoint(
        models / "demo" / "stpm" / "model.safetensors",
        detector,
        {
            "dataset": "demo",
            "kind": kind,
            "channels": 1,
            "image_size": 64,
            "preprocess": to_plain(PreprocessConfig()),
            "dataset_config": to_plain(dataset),
            "calibration": {
                "threshold": 0.5,
                "scale": 0.1,
                "rule": "specificity",
                "target_specificity": 0.95,
                "validation_specificity": 0.95,
            },
            "training": {"trained_at": "2026-11-22T00:00:00+00:00"},
        },
    )


def nifti_bytes() -> bytes:
    volume = np.zeros((40, 40, 12), np.float32)
    volume[8:32, 6:34, 2:10] = 100 + np.random.default_rng(0).normal(0, 5, (24, 28, 8))
    image = nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0]))
    return image.to_bytes()


def run_app(monkeypatch, models: Path) -> AppTest:
    monkeypatch.setenv("KDMED_MODELS_DIR", str(models))
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    return app


def test_without_models_the_app_explains_how_to_train(monkeypatch, tmp_path):
    app = run_app(monkeypatch, tmp_path)
    assert not app.exception
    assert any("make demo" in info.value for info in app.info)


def test_volume_upload_is_scored_and_reviewable(monkeypatch, tmp_path):
    write_model(tmp_path, "volume")
    app = run_app(monkeypatch, tmp_path)
    app.file_uploader[0].upload("study.nii", nifti_bytes()).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "slices flagged" in app.subheader[0].value
    app.slider[1].set_value(0.9).run()  # heat-map opacity
    assert not app.exception
    assert len(app.image) >= 1 and "score" in app.image[0].captions[0]


def test_corrupt_upload_shows_a_message_and_the_app_keeps_working(monkeypatch, tmp_path):
    write_model(tmp_path, "image")
    app = run_app(monkeypatch, tmp_path)
    app.file_uploader[0].upload("broken.nii.gz", b"\x1f\x8b\x08\x00garbage").run()
    assert not app.exception
    assert app.error and "cannot be scored" in app.error[0].value
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)).save(buffer, "PNG")
    app.file_uploader[0].set_value([("scan.png", buffer.getvalue(), "image/png")]).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "slices flagged" in app.subheader[0].value
