"""Saving a journey from the studio's editor, and its difference from the last commit.

A save writes exactly the text the marketer typed (so every comment and the layout stay;
a file with Windows line ends keeps them) into the same file of journeys/, and only when:

- the file is a regular file directly in journeys/ (not a link, not a folder), within the
  size bound of siyu.language.project_files, and so is the text;
- the file still holds what the page loaded (its SHA-256), so nobody's edit is overwritten;
- the text validates with `siyu validate`'s rules (siyu.language.check_project).

The write is atomic: a temporary file in journeys/ renamed over the file, so a reader (a
tick, `siyu validate`) sees the old text or the new, never half of it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from siyu.language.project_files import Refused, check_size, confine, read_source
from siyu.project import Project
from siyu.studio.checking import Checked, check_text

GIT_TIMEOUT = 5.0  # seconds


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


SaveOutcome = Literal["saved", "refused", "changed", "invalid"]
_STATUS: dict[SaveOutcome, int] = {"saved": 200, "refused": 403, "changed": 409, "invalid": 422}


@dataclass
class Saved:
    """What became of a save; the page words it (siyu.studio.pages.save_message)."""

    outcome: SaveOutcome
    checked: Checked | None = None  # the text's check (outcomes "saved" and "invalid")
    loaded: str = ""  # the hash of what the file holds now
    refusal: str = ""  # why the file may not be written (outcome "refused")

    @property
    def ok(self) -> bool:
        return self.outcome == "saved"

    @property
    def status(self) -> int:
        """The HTTP status the studio answers with."""
        return _STATUS[self.outcome]


def writable_journey(project: Project, path: Path) -> Path:
    """`path` if a save may replace it: a regular file (not a link) directly in journeys/,
    within the size bound; Refused otherwise."""
    folder = project.journeys_dir
    if path.is_symlink():
        raise Refused("outside-folder", path.name, "is a link: the studio does not save it")
    real = confine(folder, path)
    if real.parent != folder.resolve():
        raise Refused("outside-folder", path.name, "is not directly in journeys/: refused")
    info = os.lstat(real)
    if not stat.S_ISREG(info.st_mode):
        raise Refused("not-a-file", path.name, "is not a regular file: refused")
    check_size(path, info.st_size)
    return real


def save_journey(project: Project, path: Path, text: str, loaded: str) -> Saved:
    with _SAVING:  # two saves at once: the second sees the first's file, not the one before
        return _save(project, path, text, loaded)


_SAVING = threading.Lock()


def _save(project: Project, path: Path, text: str, loaded: str) -> Saved:
    try:
        real = writable_journey(project, path)
        check_size(path, len(text.encode("utf-8")))
        current = read_source(project.journeys_dir, path)
    except Refused as refused:
        return Saved("refused", refusal=refused.message)
    if text_hash(current) != loaded:
        return Saved("changed", loaded=text_hash(current))
    checked = check_text(project, path, text)
    if checked.problems or checked.spec is None:
        return Saved("invalid", checked, text_hash(current))
    if "\r\n" in current and "\r\n" not in text:  # a browser's text has \n line ends only
        text = text.replace("\n", "\r\n")
    _replace(real, text)
    return Saved("saved", checked, text_hash(text))


def _replace(real: Path, text: str) -> None:
    mode = stat.S_IMODE(os.lstat(real).st_mode)
    fd, temporary = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".saving")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, real)  # a rename replaces a link put there since, not its target
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def committed_text(project: Project, path: Path) -> tuple[str | None, str]:
    """The file as the last commit has it, or None and why not (no git, not a repository,
    not committed yet)."""
    relative = path.relative_to(project.root).as_posix()
    try:
        done = subprocess.run(
            ["git", "cat-file", "blob", f"HEAD:./{relative}"],
            cwd=project.root,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        return None, "git is not installed"
    except subprocess.TimeoutExpired:
        return None, f"git did not answer within {GIT_TIMEOUT:g} s"
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace")
        if "not a git repository" in error:
            return None, "the project is not a git repository"
        if "does not exist in" in error or "exists on disk, but not in" in error:
            return "", f"{relative} is not in the last commit yet"
        return None, (error.strip().splitlines() or ["git failed"])[0][:200]
    try:
        check_size(path, len(done.stdout))
        return done.stdout.decode("utf-8"), f"{relative} as last committed (HEAD)"
    except Refused as refused:
        return None, f"the committed version {refused.reason}"
    except UnicodeDecodeError:
        return None, "the committed version is not UTF-8 text"


def committed_diff(project: Project, path: Path, text: str) -> tuple[list[str] | None, str]:
    """`text` against the last committed version as a unified diff's lines, and what it is
    compared with; None when there is no committed version to compare with."""
    before, note = committed_text(project, path)
    if before is None:
        return None, note
    name = path.relative_to(project.root).as_posix()
    lines = difflib.unified_diff(  # by lines: \r\n and \n line ends are the same here
        before.splitlines(),
        text.splitlines(),
        fromfile=f"{name} (HEAD)",
        tofile=f"{name} (editor)",
        lineterm="",
    )
    return list(lines), note
