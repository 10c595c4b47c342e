"""A copy of this repository's project files in a folder a test may change."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a brand's repository holds, without tests, local state or virtual environments.
_NOT_PROJECT = shutil.ignore_patterns(
    ".git", ".venv", "var", "__pycache__", "*.db", "tests", "bench", "docs", "*.egg-info"
)


def copy_project(target: Path, names: Iterable[str] | None = None) -> Path:
    """The named files and folders of the repository (all of its project files without
    `names`) copied into `target`; names the repository lacks are skipped."""
    if names is None:
        shutil.copytree(ROOT, target, ignore=_NOT_PROJECT, dirs_exist_ok=True)
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=_NOT_PROJECT, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy(source, target / name)
    return target
