"""A minimal headless-Chromium driver over the DevTools protocol (for the viewer's browser test and
``benchmarks/viewer_latency.py``): launch, open a page, screenshot, evaluate JS, drag the mouse.

Needs a Chromium binary (Debian's ``chromium`` package; no browser is downloaded) and the ``websockets``
client (a dependency of viser). :func:`find_chromium` says why none can be used.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from typing import Any, Dict, Optional, Tuple

import numpy as np

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> Tuple[Optional[str], str]:
    """``(path, "")`` of a usable Chromium, or ``(None, why not)``."""
    exe = os.environ.get("NERF_APP_CHROMIUM") or next((p for p in map(shutil.which, CANDIDATES) if p), None)
    if not exe:
        return None, ("no Chromium on PATH (looked for " + ", ".join(CANDIDATES) +
                      "; Debian: apt-get install chromium, or set NERF_APP_CHROMIUM)")
    try:
        import websockets.sync.client  # noqa: F401  (the DevTools connection)
    except ImportError as exc:
        return None, f"the websockets client is missing ({exc}); pip install websockets"
    return exe, ""


def _devtools_port(profile: str) -> int:
    """The DevTools port a Chromium started with ``--remote-debugging-port=0`` chose (first line of
    ``DevToolsActivePort`` in its profile); OSError until it has written it."""
    with open(os.path.join(profile, "DevToolsActivePort"), encoding="utf-8") as f:
        line = f.readline().strip()
    if not line.isdigit():
        raise OSError("DevToolsActivePort not written yet")
    return int(line)


class Chromium:
    """``with Chromium() as b: b.open(url); b.screenshot()``."""

    def __init__(self, width: int = 1100, height: int = 700, exe: Optional[str] = None, timeout: float = 30.0):
        exe = exe or find_chromium()[0]
        if exe is None:
            raise RuntimeError(find_chromium()[1])
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="nerf-app-chromium-")
        # port 0: Chromium binds a free port itself and writes it to DevToolsActivePort in the profile (a port
        # found free here and handed over could be taken by another process in between)
        self.port = None
        args = [exe, "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                "--remote-debugging-port=0", "--remote-allow-origins=*",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._id = 0
        self.ws = None
        deadline = time.time() + timeout
        while True:
            try:
                self.port = self.port or _devtools_port(self.profile)
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=2) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"Chromium did not start (exit code {self.proc.returncode})")
            time.sleep(0.2)
        from websockets.sync.client import connect
        self.ws = connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, timeout: float = 30.0, **params) -> Dict[str, Any]:
        self._id += 1
        mid = self._id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.time())))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def screenshot(self, path: Optional[str] = None) -> np.ndarray:
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        if path:
            with open(path, "wb") as f:
                f.write(data)
        from PIL import Image
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 12, pause: float = 0.03) -> None:
        """A left-button drag, as a user orbiting the camera does it."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x0, y=y0)
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, button="left", buttons=1, clickCount=1)
        for k in range(1, steps + 1):
            x, y = x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps
            self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
            time.sleep(pause)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x1, y=y1, button="left", buttons=0, clickCount=1)

    def close(self) -> None:
        try:
            if self.ws is not None:
                self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
