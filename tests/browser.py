"""Headless Chromium for the tests that look at a page as a person would: `run_chromium`
prints a page's DOM, `playwright_chromium` is a browser to type and click in (Playwright's
sync API driving Debian's Chromium, not a browser Playwright downloads).

On a laptop without Chromium these tests are skipped with the reason; in CI (`CI` set, as
`.ci/run` runs) a missing Chromium is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SHOTS = Path("/tmp/studio-shots")  # copies of the screenshots, for a person to look at

# No background traffic: the machine's network is closed and nothing may leave it.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    """The Chromium binary; skips the test without one, except in CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("Chromium is required in CI (.ci/run installs the Debian package)")
    pytest.skip("Chromium is not installed (apt-get install chromium); CI runs this test")


def run_chromium(profile: Path, *args: str, timeout: float = 90) -> str:
    """Run headless Chromium with a throwaway profile; its standard output."""
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    env = {**os.environ, "HOME": str(profile.parent)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=True
    )
    return done.stdout


@contextmanager
def playwright_chromium() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright, headless; skipped or failed as `chromium()`."""
    binary = chromium()
    from playwright.sync_api import sync_playwright

    flags = [flag for flag in FLAGS if flag != "--headless"]  # Playwright adds its own
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=flags)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page(width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A page of a fresh headless Chromium (playwright_chromium)."""
    with playwright_chromium() as browser:
        yield browser.new_page(viewport={"width": width, "height": height})


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """The whole page as `folder`/NAME.png, and a copy in /tmp/studio-shots for a person to
    look at."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path
