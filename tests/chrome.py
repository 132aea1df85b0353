"""A headless Chromium driven by Selenium through Debian's `chromium-driver`, for the report page's tests (and the
screenshots in docs/).

Chromium and its driver come from Debian's `chromium` and `chromium-driver` packages (the same version; .ci/run
installs both); Selenium is pinned in requirements-dev.txt. Nothing is downloaded at run time: the driver binary is
named explicitly, so Selenium Manager never runs.

    # a screenshot (docs/report.md has the commands of both in docs/)
    python tests/chrome.py demo_output/report.html docs/report.png --click "#spans tbody tr:nth-child(4)" --height 1600
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import JavascriptException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")
# Chromium as root in a container: no sandbox, no GPU, and nothing that phones home or updates itself.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--hide-scrollbars",
    "--autoplay-policy=no-user-gesture-required",
)


def _which(names: tuple[str, ...], package: str) -> str:
    """The first of `names` on PATH, or RuntimeError saying how to install it (the tests need it: no skip)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"no {names[0]} on PATH: install it (apt-get install -y {package}; .ci/run does)")


class Browser:
    """One headless Chromium with one page. `downloads`: the folder the page's downloads are saved into."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.downloads = Path(tempfile.mkdtemp(prefix="downloads-"))
        options = webdriver.ChromeOptions()
        options.binary_location = _which(EXECUTABLES, "chromium")
        for flag in (*FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(self.downloads), "download.prompt_for_download": False}
        )
        service = Service(_which(DRIVERS, "chromium-driver"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_script_timeout(timeout)
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(self.downloads)}
        )
        self._log: list[dict] = []

    def open(self, path: str | Path, ready: str = "document.body && document.body.dataset.ready") -> Any:
        """Load a local file (file://, no server) and wait until the JS expression `ready` is truthy; its value."""
        self.driver.get(Path(path).resolve().as_uri())
        return self.wait_for(ready)

    def reload(self, ready: str = "document.body && document.body.dataset.ready") -> Any:
        self.driver.refresh()
        return self.wait_for(ready)

    def eval(self, expression: str) -> Any:
        """The value of a JS expression in the page (a promise is awaited); RuntimeError if it throws."""
        try:
            return self.driver.execute_script(f"return ({expression});")
        except JavascriptException as exc:
            raise RuntimeError(f"{expression}: {exc.msg}") from None

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"still false after {timeout or self.timeout} s: {expression}")

    def click(self, selector: str) -> None:
        """A real click (WebDriver's pointer actions: press and release) at the centre of the first element
        matching `selector`, scrolled into view."""
        element = self.driver.find_element(By.CSS_SELECTOR, selector)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'});", element)
        ActionChains(self.driver).move_to_element(element).click().perform()

    def click_at(self, x: float, y: float) -> None:
        """A real click at viewport coordinates (x, y)."""
        actions = ActionBuilder(self.driver)
        actions.pointer_action.move_to_location(round(x), round(y)).click()
        actions.perform()

    def keys(self, *keys: str) -> None:
        """Real key presses (each key down and up) into the focused element, as a user types them."""
        chain = ActionChains(self.driver)
        for key in keys:
            chain.send_keys(key)
        chain.perform()

    def wait_for_download(self, name: str, timeout: float = 10.0) -> Path:
        """The file `name` once the browser has finished saving it into `downloads`."""
        path = self.downloads / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            partial = list(self.downloads.glob("*.crdownload"))
            if path.is_file() and not partial:
                return path
            time.sleep(0.05)
        raise TimeoutError(f"no download {name} in {self.downloads} after {timeout} s")

    def clear_log(self) -> None:
        self._read_log()
        self._log.clear()

    def _read_log(self) -> None:
        self._log += self.driver.get_log("browser")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads reported since the last `clear_log`."""
        self._read_log()
        return [e["message"] for e in self._log if e.get("level") == "SEVERE"]

    def screenshot(self, path: str | Path) -> Path:
        self.driver.save_screenshot(str(path))
        return Path(path)

    def close(self) -> None:
        with contextlib.suppress(WebDriverException):
            self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)
        shutil.rmtree(self.downloads, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="screenshot of a local page in headless Chromium")
    p.add_argument("page")
    p.add_argument("png")
    p.add_argument("--click", action="append", default=[], help="CSS selector of an element to click first")
    p.add_argument("--keys", default="", help="keys to press after the clicks (e.g. 'aar')")
    p.add_argument("--scroll", default=None, help="CSS selector of an element to scroll to the top before the shot")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=900)
    args = p.parse_args()
    with Browser(width=args.width, height=args.height) as b:
        b.open(args.page)
        b.eval("localStorage.clear()")
        b.reload()
        for selector in args.click:
            b.click(selector)
        if args.keys:
            b.keys(*args.keys)
        b.eval(
            f"document.querySelector({json.dumps(args.scroll)}).scrollIntoView({{block: 'start'}})"
            if args.scroll
            else "window.scrollTo(0, 0)"
        )
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
