"""Loads journey files: YAML (with the line and column of every node) → JourneySpec, and
checks what a typed model alone cannot (channels, templates, event sources, SQL columns).

Every problem is collected, never only the first, and carries file:line:column.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from db.sources import SOURCES
from siyu.errors import SpecError
from siyu.language.problems import Problem, did_you_mean
from siyu.language.spec import Entry, EventFilter, Goal, JourneySpec, Step
from siyu.language.templates_check import check_template
from siyu.language.where_clause import check_where


@dataclass(frozen=True)
class Catalog:
    """What a journey may refer to: channel names and the templates folder."""

    channels: Collection[str]
    templates_dir: Path


def load_journey(path: Path, catalog: Catalog) -> JourneySpec:
    spec, problems = check_journey_file(path, catalog)
    if problems or spec is None:
        raise SpecError(problems)
    return spec


def check_journey_file(path: Path, catalog: Catalog) -> tuple[JourneySpec | None, list[Problem]]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(file, 0, 0, "no-such-file", "journey file not found")]
    except UnicodeDecodeError as error:
        return None, [Problem(file, 0, 0, "not-utf8", f"the file is not UTF-8 text ({error})")]
    try:
        raw = YAML(typ="rt").load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        detail = " ".join(str(p) for p in (error.context, error.problem) if p)
        return None, [Problem(file, line, col, "bad-yaml", detail or str(error))]
    if not isinstance(raw, CommentedMap):
        return None, [
            Problem(
                file,
                1,
                1,
                "bad-yaml",
                "a journey file must be a mapping of keys (journey:, entry:, steps: ...)",
            )
        ]
    problems = list(_check_references(file, raw, catalog))
    try:
        spec = JourneySpec.model_validate(raw)
    except ValidationError as error:
        problems += [_problem_from_pydantic(file, raw, e) for e in error.errors()]
        return None, sorted(set(problems))
    return spec, sorted(set(problems))


# --- positions --------------------------------------------------------------------------


def _position(raw: Any, loc: tuple[str | int, ...], *, key: bool = False) -> tuple[int, int]:
    """1-based (line, column) of the node at `loc`, or of its nearest ancestor that has one.
    With key=True, the position of the last mapping key itself (for unknown keys)."""
    node, best = raw, (1, 1)
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.key(part) if (key and last) else node.lc.value(part)
            best = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = node.lc.item(part)
            best = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return best


_MODELS_BY_KEY: dict[str, type[BaseModel]] = {
    "entry": Entry,
    "exit_when": EventFilter,
    "goal": Goal,
    "steps": Step,
}


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel]:
    named = [p for p in loc if isinstance(p, str)]
    return _MODELS_BY_KEY.get(named[0], JourneySpec) if len(named) > 1 else JourneySpec


def _where(raw: Any, loc: tuple[str | int, ...]) -> str:
    """Name a location the way a marketer reads it: step 'day3-care' rather than steps[1]."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps")
        step = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
        name = (
            f"step '{step['id']}'"
            if isinstance(step, dict) and "id" in step
            else f"step #{loc[1] + 1}"
        )
        rest = ".".join(str(p) for p in loc[2:])
        return f"{name}{' key ' + repr(rest) if rest else ''}"
    return "'" + ".".join(str(p) for p in loc) + "'" if loc else "the journey"


def _problem_from_pydantic(file: str, raw: Any, error: Any) -> Problem:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = error["type"]
    if kind == "extra_forbidden":
        line, col = _position(raw, loc, key=True)
        allowed = _model_at(loc).model_fields.keys()
        name = str(loc[-1])
        parent = _where(raw, loc[:-1]) if len(loc) > 1 else "a journey"
        return Problem(
            file,
            line,
            col,
            "unknown-key",
            f"unknown key '{name}' in {parent}{did_you_mean(name, allowed)}",
        )
    line, col = _position(raw, loc)
    if kind == "missing":
        parent = _where(raw, loc[:-1]) if len(loc) > 1 else "the journey"
        return Problem(file, line, col, "missing-key", f"{parent} needs the key '{loc[-1]}'")
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        message = (
            f"'{error['input']}' is not a valid name; use lower-case letters, digits, '-', '_'"
        )
    code = "bad-duration" if "duration" in message else "bad-value"
    return Problem(file, line, col, code, f"{_where(raw, loc)}: {message}")


# --- references -------------------------------------------------------------------------


def _check_references(file: str, raw: CommentedMap, catalog: Catalog) -> Iterator[Problem]:
    """Checks on the raw YAML, so they run even when other keys fail to validate."""
    for key in ("entry", "exit_when", "goal"):
        event_filter = raw.get(key)
        if isinstance(event_filter, dict):
            yield from _check_event_filter(file, raw, key, event_filter)

    steps = raw.get("steps")
    if not isinstance(steps, list):
        return
    seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        name = f"step '{step['id']}'" if "id" in step else f"step #{index + 1}"
        step_id = step.get("id")
        if isinstance(step_id, str):
            if step_id in seen:
                line, col = _position(raw, ("steps", index, "id"))
                yield Problem(
                    file,
                    line,
                    col,
                    "duplicate-step",
                    f"step id '{step_id}' is used twice (first as step #{seen[step_id] + 1})",
                )
            seen.setdefault(step_id, index)
        channel = step.get("send")
        if isinstance(channel, str) and channel not in catalog.channels:
            line, col = _position(raw, ("steps", index, "send"))
            yield Problem(
                file,
                line,
                col,
                "unknown-channel",
                f"{name}: unknown channel '{channel}'"
                f"{did_you_mean(channel, catalog.channels)} "
                f"(channels: {', '.join(sorted(catalog.channels))})",
            )
        template = step.get("template")
        if isinstance(template, str):
            template_path = catalog.templates_dir / template
            if template_path.is_file():
                yield from check_template(template_path)
            else:
                line, col = _position(raw, ("steps", index, "template"))
                known = sorted(p.name for p in catalog.templates_dir.glob("*.j2"))
                yield Problem(
                    file,
                    line,
                    col,
                    "unknown-template",
                    f"{name}: template '{template}' not found in "
                    f"{catalog.templates_dir}/{did_you_mean(template, known)}",
                )


def _check_event_filter(
    file: str, raw: CommentedMap, key: str, event_filter: dict[str, Any]
) -> Iterator[Problem]:
    event = event_filter.get("event")
    if not isinstance(event, str):
        return
    source = SOURCES.get(event)
    if source is None:
        line, col = _position(raw, (key, "event"))
        yield Problem(
            file,
            line,
            col,
            "unknown-event",
            f"{key}: unknown event '{event}'{did_you_mean(event, SOURCES)} "
            f"(events: {', '.join(SOURCES)})",
        )
        return
    where = event_filter.get("where")
    if isinstance(where, str) and where.strip():
        line, col = _position(raw, (key, "where"))
        for error in check_where(where, source.columns):
            yield Problem(file, line, col, error.code, f"{key}.where: {error.message}")
