"""Headless Chromium driven by Playwright (typing, clicking, screenshots), Debian's Chromium
rather than a downloaded one. Without Chromium the test is skipped, except in CI, where it
fails (tests.browser.chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.browser import FLAGS, chromium

SHOTS = Path("/tmp/studio-shots")  # copies of the screenshots, for a person to look at


@contextmanager
def browser_page() -> Iterator[Page]:
    """A page of a fresh headless Chromium (no background traffic: tests.browser.FLAGS)."""
    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=[f for f in FLAGS if f != "--headless"]
        )
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """The whole page as `folder`/NAME.png, and a copy in /tmp/studio-shots."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path
