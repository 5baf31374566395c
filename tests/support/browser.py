"""The distribution's headless Chromium, driven by Playwright (never a downloaded browser).
`scripts/setup-chromium.sh` installs it; a missing browser fails the tests, it does not
skip them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support.processes import ROOT

# Chromium's own background traffic would be refused by this machine's closed network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Where the screenshots go: a temporary folder, or docs/console with `make screenshots`.
SCREENSHOTS_ENV = "SPILLOVER_SCREENSHOTS"


def chromium_path() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    assert found, "no Chromium: run scripts/setup-chromium.sh (Debian's chromium package)"
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(fallback: Path) -> Path:
    wanted = os.environ.get(SCREENSHOTS_ENV)
    out = (ROOT / wanted) if wanted else fallback
    out.mkdir(parents=True, exist_ok=True)
    return out


class ConsoleWatch:
    """Every console error and uncaught exception a page reports."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console.error: {message.text}")
