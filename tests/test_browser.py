"""The real app in a real browser: `streamlit run app/main.py` served on a free port, headless Chromium
(Debian's `chromium`, installed by `make test-all` and `make test-slow`) uploads a NIfTI study through the
page's file input, waits for the scored review and takes a screenshot, written under the test's output
folder and to build/test-output/app_scored.png for people to look at."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from browser import Browser, chromium_binary, free_port, wait_for_http
from fake_models import model_at_median, nifti_bytes
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_scored_study_renders_in_headless_chromium(tmp_path):
    if chromium_binary() is None:
        pytest.skip(
            "Debian's chromium is not installed (`make test-all` and `make test-slow` install it with "
            "apt-get when they can)"
        )
    study = tmp_path / "study.nii"
    study.write_bytes(nifti_bytes())
    models = tmp_path / "models"
    model_at_median(models, "volume", str(study))
    port = free_port()
    env = {**os.environ, "KDMED_MODELS_DIR": str(models), "KDMED_REPORTS_DIR": str(tmp_path / "reports")}
    server = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"),
            "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    browser = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", 60)
        browser = Browser(tmp_path / "chromium-profile")
        browser.send("Page.enable")
        browser.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
        browser.wait_until("document.querySelector('input[type=file]') !== null", 60)
        browser.set_file("input[type=file]", study)
        browser.wait_until("document.body.innerText.includes('slices flagged')", 120)
        browser.wait_until("document.querySelectorAll('img').length > 0", 30)
        browser.wait_until("[...document.images].every(i => i.complete && i.naturalWidth > 0)", 30)
        png = browser.screenshot()
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    shot = tmp_path / "app_scored.png"
    shot.write_bytes(png)
    keep = REPO / "build" / "test-output"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "app_scored.png")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.float32)
    assert pixels.shape[0] > 600 and pixels.shape[1] > 1000
    assert pixels.std() > 20, "the screenshot is blank"
    warm = pixels[..., 0] - pixels[..., 2] > 60  # the red-to-yellow heat map tints the slice
    assert warm.sum() > 5000, "no heat-map overlay in the screenshot"
