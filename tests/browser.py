"""A headless Chromium driven over the Chrome DevTools protocol, for the tests of the report page (and its screenshot).

Chromium talks CDP over a pipe (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, read on fd 3,
written on fd 4), so no WebSocket client or driver binary is needed: only Debian's `chromium` package.

    python tests/browser.py demo_output/report.html docs/report.png --click "#spans tbody tr"   # a screenshot
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """The Chromium executable, or RuntimeError saying how to install it (the tests need it: no skip)."""
    for name in EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no chromium on PATH: install it (apt-get install -y chromium; .ci/run does)")


def _high(fd: int) -> int:
    """A copy of `fd` numbered 10 or more (so placing the child's fds 3 and 4 cannot overwrite it), close-on-exec."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return copy


class Browser:
    """One headless Chromium with one page; `events` keeps every CDP event received (console, errors, loads)."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        to_child_r, self._to_child = map(_high, os.pipe())
        self._from_child, from_child_w = map(_high, os.pipe())
        devnull = os.open(os.devnull, os.O_RDWR)
        args = [
            chromium_path(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--hide-scrollbars",
            "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        actions = [
            (os.POSIX_SPAWN_DUP2, to_child_r, 3),
            (os.POSIX_SPAWN_DUP2, from_child_w, 4),
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2),
        ]
        self.pid = os.posix_spawn(args[0], args, os.environ, file_actions=actions)
        for fd in (to_child_r, from_child_w, devnull):
            os.close(fd)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self.events: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank", session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_child, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.get(message["id"])
                    if box:
                        box.put(message)
                else:
                    self.events.append(message)

    def call(self, method: str, session: bool = True, **params: Any) -> dict:
        """Send one CDP command (to the page's session unless session=False) and return its result."""
        with self._lock:
            self._next_id += 1
            ident, box = self._next_id, queue.Queue()
            self._replies[ident] = box
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        try:
            reply = box.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"chromium did not answer {method} within {self.timeout} s") from None
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def open(self, path: str | os.PathLike, ready: str = "document.body && document.body.dataset.ready") -> Any:
        """Load a local file and wait until the JS expression `ready` is truthy; return its value."""
        self.call("Page.navigate", url=Path(path).resolve().as_uri())
        return self.wait_for(ready)

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"still false after {timeout or self.timeout} s: {expression}")

    def eval(self, expression: str) -> Any:
        """The value of a JS expression in the page (promises awaited); RuntimeError if it throws."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails'].get('exception', reply['exceptionDetails'])}")
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the first element matching `selector`."""
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: "center", inline: "center"}}); const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        self.click_at(*box)

    def click_at(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads reported so far."""
        found = []
        for e in list(self.events):
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"].get("exception", params["exceptionDetails"])))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found

    def screenshot(self, path: str | os.PathLike) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except (RuntimeError, TimeoutError, OSError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="screenshot of a local page in headless Chromium")
    p.add_argument("page")
    p.add_argument("png")
    p.add_argument("--click", help="CSS selector of an element to click first (e.g. a span of the report)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=900)
    args = p.parse_args()
    with Browser(width=args.width, height=args.height) as b:
        b.open(args.page)
        if args.click:
            b.click(args.click)
            b.call("Runtime.evaluate", expression="window.scrollTo(0, 0)")
        b.wait_for(
            "[...document.querySelectorAll('video')].every(v => v.hidden || !v.src || "
            "(v.readyState >= 3 && !v.seeking))",
            timeout=10,
        )
        time.sleep(1.0)  # the seeked frame on screen, the loading spinner gone
        b.screenshot(args.png)
        print("\n".join(b.errors()) or f"{args.png}: no console errors")


if __name__ == "__main__":
    main()
