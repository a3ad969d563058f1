"""The real app in a real browser: `streamlit run app/main.py` served on a free port, headless Chromium
(Debian's `chromium`, installed by `make test-all` and `make test-slow`) uploads a NIfTI study through the
page's file input, waits for the scored review, checks that the findings strip and the orientation markers
are there and takes a screenshot, written under the test's output folder and to
build/test-output/app_scored.png for people to look at. It then presses the next-slice shortcut and times
the rerun until the new slice's caption is on the page (written to build/test-output/
slice_change_seconds.txt; measured, not asserted: the machine's load decides it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from browser import Browser, chromium_binary, free_port, wait_for_http
from fake_models import model_at_median, nifti_bytes
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FINDING_BUTTON = (
    r"[...document.querySelectorAll('button')].some(b => /peak .+ at slice \d+/.test(b.innerText))"
)
SLIDER = "document.querySelector('input[type=range][aria-label=Slice]')"  # the slice slider


def change_slice(browser: Browser) -> tuple[int, str, float]:
    """Press the next-slice shortcut (the previous-slice one on the last slice) and time the rerun until the
    new slice's caption is on the page: the slice shown now, the key and the seconds."""
    here, last = (int(browser.evaluate(f"{SLIDER}.{what}")) for what in ("value", "max"))
    key, target = ("j", here + 1) if here < last else ("k", here - 1)
    browser.evaluate("document.activeElement && document.activeElement.blur()")  # not typing in a field
    started = time.monotonic()
    browser.press(key)
    shown = f"document.body.innerText.includes('slice {target} · z = ')"
    while not browser.evaluate(shown):
        if time.monotonic() - started > 60:
            raise TimeoutError(f"pressing {key!r} never showed slice {target}")
        time.sleep(0.02)
    return target, key, time.monotonic() - started


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
        browser.wait_until(FINDING_BUTTON, 10)  # the findings strip: a button per finding
        text = browser.evaluate("document.body.innerText")
        png = browser.screenshot()
        target, key, seconds = change_slice(browser)
        # the page updated: the slider follows the new slice's caption (a few tenths of a second later)
        browser.wait_until(f"{SLIDER}.value == {target}", 10)
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
    (keep / "slice_change_seconds.txt").write_text(f"{seconds:.3f}\n")
    print(f"slice change (key {key!r}) to slice {target}: {seconds:.3f} s")
    assert "Findings" in text and "All flagged slices" in text
    assert "Patient directions at the edges (left L · right R · top A · bottom P)" in text
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.float32)
    assert pixels.shape[0] > 600 and pixels.shape[1] > 1000
    assert pixels.std() > 20, "the screenshot is blank"
    warm = pixels[..., 0] - pixels[..., 2] > 60  # the red-to-yellow heat map tints the slice
    assert warm.sum() > 5000, "no heat-map overlay in the screenshot"
