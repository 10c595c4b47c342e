"""YAML that marketers and operators write, read within bounds: the file through the confined
reader (a regular file inside its folder, under a size cap), then at most SIYU_MAX_YAML_NODES
values once aliases are expanded (a "billion laughs" file is refused, not walked) and at most
SIYU_MAX_YAML_DEPTH levels. Journeys use it, and so do the project's settings files
(channels.yaml, policies.yaml, segments.yaml, alerts.yaml, lint.yaml)."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from siyu.language.problems import Problem, SpecError
from siyu.language.project_files import Refused, read_source
from siyu.limits import limits


def read_yaml(path: Path, folder: Path | None = None) -> tuple[Any, list[Problem]]:
    """The YAML of `path` (with positions) and no problems, or None and its problems,
    including RecursionError and MemoryError, never an exception."""
    file = str(path)
    try:
        text = read_source(folder or path.parent, path)
    except Refused as refused:
        return None, [Problem(file, 0, 0, refused.code, refused.message)]
    return parse_yaml(file, text)


def parse_yaml(file: str, text: str) -> tuple[Any, list[Problem]]:
    """The YAML `text` (with positions) of `file`, within the same node and depth bounds as a
    file read from disk: for text not written yet (the studio's editor, which bounds its size
    with project_files.check_size)."""
    bounds = limits()
    raw, problems = _parse(file, text, bounds.yaml_nodes, bounds.yaml_depth)
    # a copy: the parse is shared, and a caller may change what it gets
    return copy.deepcopy(raw), list(problems)


# Parsed once per content: every tick reads its journey and channels.yaml several times, and
# ruamel's round-trip parser is pure Python (measured: 0.17 s of an idle tick's 1.1 s went to
# parsing the same unchanged files again; a copy of the parse costs a tenth of parsing).
@lru_cache(maxsize=32)
def _parse(file: str, text: str, nodes: int, depth: int) -> tuple[Any, tuple[Problem, ...]]:
    """The YAML `text` of `file` within the bounds (`nodes` and `depth` key the cache)."""
    try:
        raw = YAML(typ="rt").load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        detail = " ".join(str(p) for p in (error.context, error.problem) if p)
        return None, (Problem(file, line, col, "bad-yaml", detail or "not valid YAML"),)
    except (RecursionError, MemoryError):
        return None, (Problem(file, 0, 0, "too-deep", "the YAML is nested too deeply to read"),)
    except YAMLError as error:
        return None, (Problem(file, 0, 0, "bad-yaml", type(error).__name__),)
    bound = exceeds_bounds(raw)
    if bound is not None:
        return None, (Problem(file, 0, 0, "too-large", bound),)
    return raw, ()


def load_settings_yaml(path: Path) -> Any:
    """A settings file of the project ({} when empty); SpecError with its problems."""
    raw, problems = read_yaml(path, path.parent)
    if problems:
        raise SpecError(problems)
    return raw if raw is not None else {}


def exceeds_bounds(raw: Any) -> str | None:
    """Why `raw` is too big to walk, or None. Aliases are counted every time they are used
    (that is how everything after this walks them), so the walk stops after at most
    SIYU_MAX_YAML_NODES nodes whatever the aliases multiply to; it is iterative, so depth
    costs no recursion."""
    bounds = limits()
    stack: list[tuple[Any, int]] = [(raw, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > bounds.yaml_nodes:
            return (
                f"the file has more than {bounds.yaml_nodes:,} YAML values once aliases "
                "are expanded (SIYU_MAX_YAML_NODES)"
            )
        if depth > bounds.yaml_depth:
            return f"the file nests deeper than {bounds.yaml_depth} levels (SIYU_MAX_YAML_DEPTH)"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if isinstance(k, (dict, list, tuple)))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)
    return None
