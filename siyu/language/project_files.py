"""The one way journey and template files are read: confined to their folder.

A name is resolved (symlinks followed) and must stay inside its folder (`journeys/`,
`templates/`); it must be a regular file no larger than SIYU_MAX_JOURNEY_BYTES (a .yaml/.yml
file) or SIYU_MAX_TEMPLATE_BYTES (any other; siyu.limits), and
never under /proc, /sys or /dev. Anything else is refused with a `Refused` that names the file
as the project wrote it and never carries a byte of its content.

Files read this way are remembered, so that an error message's excerpt (siyu.language.
problems) only ever shows lines of a file this module admitted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from siyu.limits import limits

_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))
_admitted: dict[Path, Path] = {}  # resolved file -> the folder it was admitted from


class Refused(Exception):
    """A file that may not be read; `code` is a Problem code, str() one line without content."""

    def __init__(self, code: str, shown: str, reason: str) -> None:
        super().__init__(f"{shown} {reason}")
        self.code = code
        self.reason = reason  # "is a link leading outside templates/: refused"
        self.message = f"{shown} {reason}"


def _folder_name(folder: Path) -> str:
    return f"{folder.name}/" if folder.name else str(folder)


def named_in(folder: Path, name: str) -> Path:
    """`folder/name` for a name a journey writes (`template: day3.j2`): a relative path that
    stays inside `folder`; an absolute path or a `..` part is refused."""
    pure = PurePosixPath(name.replace("\\", "/"))
    where = _folder_name(folder)
    if not name.strip() or pure.is_absolute() or Path(name).is_absolute():
        raise Refused(
            "outside-folder",
            f"'{name}'",
            f"is not a file in {where}: name it by its path inside it",
        )
    if ".." in pure.parts:
        raise Refused("outside-folder", f"'{name}'", f"leaves {where}: '..' is not allowed")
    return folder / pure


def confine(folder: Path, path: Path) -> Path:
    """The resolved `path`, which must lie inside `folder` (also resolved)."""
    shown, where = str(path), _folder_name(folder)
    try:
        base, real = folder.resolve(), path.resolve()
    except (OSError, RuntimeError):  # a loop of links
        raise Refused("unreadable", shown, "is a loop of links: refused") from None
    if real != base and base not in real.parents:
        kind = "is a link leading" if path.is_symlink() or real != path.absolute() else "is"
        raise Refused("outside-folder", shown, f"{kind} outside {where}: refused")
    if any(real == s or s in real.parents for s in _SYSTEM):
        raise Refused("not-a-file", shown, "is a system file, not a project file: refused")
    return real


def check_file(folder: Path, path: Path) -> Path:
    """`path` confined to `folder`, a regular file within the size cap (not read): for a
    journey's reference to a template, refused at the journey's line."""
    shown, real = str(path), confine(folder, path)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise Refused("no-such-file", shown, "not found") from None
    except OSError as error:
        raise Refused("unreadable", shown, f"cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise Refused("not-a-file", shown, _NOT_REGULAR)
    check_size(path, info.st_size)
    return real


def read_source(folder: Path, path: Path) -> str:
    """The UTF-8 text of `path`, a file inside `folder`, or Refused."""
    shown = str(path)
    real = confine(folder, path)
    cap = _cap(path)[0]
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the resolved
        # path must not have become a link since.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused("no-such-file", shown, "not found") from None
    except OSError as error:
        raise Refused("unreadable", shown, f"cannot be read ({error.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("not-a-file", shown, _NOT_REGULAR)
        check_size(path, info.st_size)
        data = _read_at_most(fd, cap + 1)
    finally:
        os.close(fd)
    check_size(path, len(data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refused(
            "not-utf8", shown, f"is not UTF-8 text (bad byte at offset {error.start})"
        ) from None
    _admitted[real] = folder
    return text


def check_size(path: Path, size: int) -> None:
    """Refused when `size` bytes are more than a file like `path` may hold (by its suffix)."""
    if size > _cap(path)[0]:
        raise Refused("too-large", str(path), _too_large(path))


_NOT_REGULAR = "is not a regular file (a folder, device or pipe): refused"


def _cap(path: Path) -> tuple[int, str]:
    if path.suffix in (".yaml", ".yml"):
        return limits().journey_bytes, "SIYU_MAX_JOURNEY_BYTES"
    return limits().template_bytes, "SIYU_MAX_TEMPLATE_BYTES"


def _too_large(path: Path) -> str:
    cap, setting = _cap(path)
    return f"is larger than {cap:,} bytes ({setting}): refused"


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def admitted_text(file: str) -> str | None:
    """The text of a file read_source admitted before (re-read the same confined way), or
    None: what error excerpts may show."""
    path = Path(file)
    try:
        folder = _admitted.get(path.resolve())
        return None if folder is None else read_source(folder, path)
    except (Refused, OSError, RuntimeError):
        return None
