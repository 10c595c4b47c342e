"""Headless Chromium for the tests that look at a page as a person would.

On a laptop without Chromium these tests are skipped with the reason; in CI (`CI` set, as
`.ci/run` runs) a missing Chromium is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
