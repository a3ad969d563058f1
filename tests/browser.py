"""A minimal Chrome DevTools Protocol client for the browser test: headless Chromium driven over its
debugging websocket (the `websockets` package's synchronous client), no Selenium or Playwright."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.3)


class Browser:
    """Headless Chromium with one page, driven by CDP commands."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1600):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                chromium_binary() or "chromium",
                "--headless=new",
                "--no-sandbox",  # root in CI containers
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={self.port}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.next_id = 0
        try:
            targets = json.loads(wait_for_http(f"http://127.0.0.1:{self.port}/json/list", 30))
            page = next(t for t in targets if t.get("type") == "page")
            self.socket = connect(page["webSocketDebuggerUrl"], max_size=2**28, open_timeout=30, legacy=True)
        except BaseException:
            self._stop()  # never leave a headless browser running
            raise

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        ident = self.next_id
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv(timeout=60))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_until(self, expression: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise TimeoutError(f"page never satisfied {expression!r}; it shows:\n{text}")
            time.sleep(0.5)

    def set_file(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def press(self, key: str) -> None:
        """One key pressed and released on the focused page (a letter: "j"), as a person types it."""
        code = f"Key{key.upper()}" if len(key) == 1 and key.isalpha() else key
        common = {"key": key, "code": code, "windowsVirtualKeyCode": ord(key.upper()) if len(key) == 1 else 0}
        self.send("Input.dispatchKeyEvent", type="keyDown", text=key, **common)
        self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    def screenshot(self) -> bytes:
        return base64.b64decode(
            self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        )

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self._stop()

    def _stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
