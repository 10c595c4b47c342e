"""Loads journey files: YAML (with the line and column of every node) → JourneySpec, and
checks what a typed model alone cannot (channels, templates, event sources, SQL columns).

Every problem is collected, never only the first, and carries file:line:column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap

from siyu.language.bounded_yaml import parse_yaml, read_yaml
from siyu.language.positions import position
from siyu.language.problems import Problem, SpecError, did_you_mean
from siyu.language.references import Catalog, check_references
from siyu.language.spec import (
    AllCondition,
    Anchor,
    AnyCondition,
    CustomerCondition,
    EventCondition,
    JourneySpec,
    KeyProblem,
    NotCondition,
    ReachableCondition,
    ReentryAfter,
    StepCondition,
)


def load_journey(path: Path, catalog: Catalog, folder: Path | None = None) -> JourneySpec:
    spec, problems = check_journey_file(path, catalog, folder)
    if problems or spec is None:
        raise SpecError(problems)
    return spec


def check_journey_file(
    path: Path, catalog: Catalog, folder: Path | None = None
) -> tuple[JourneySpec | None, list[Problem]]:
    """The journey in `path`, read only from inside `folder` (default: the file's own folder;
    a project passes its journeys/), and every problem found in it."""
    raw, problems = read_journey_yaml(path, folder)
    return check_journey_yaml(str(path), raw, problems, catalog)


def check_journey_yaml(
    file: str, raw: CommentedMap | None, problems: list[Problem], catalog: Catalog
) -> tuple[JourneySpec | None, list[Problem]]:
    """The journey in `raw` (as read_journey_yaml or journey_yaml_text gave it, with its
    problems), and every problem found in it."""
    if raw is None:
        return None, problems
    problems = list(check_references(file, raw, catalog))
    try:
        spec = JourneySpec.model_validate(raw)
    except ValidationError as error:
        problems += [_problem_from_pydantic(file, raw, e) for e in error.errors()]
        return None, sorted(set(problems))
    return spec, sorted(set(problems))


def read_journey_yaml(
    path: Path, folder: Path | None = None
) -> tuple[CommentedMap | None, list[Problem]]:
    """A journey file's YAML (with positions), within the bounds of siyu.limits
    (siyu/language/bounded_yaml.py); problems instead of exceptions."""
    return _journey_mapping(str(path), *read_yaml(path, folder))


def journey_yaml_text(file: str, text: str) -> tuple[CommentedMap | None, list[Problem]]:
    """read_journey_yaml for text not written to `file` yet (the studio's editor)."""
    return _journey_mapping(file, *parse_yaml(file, text))


def _journey_mapping(
    file: str, raw: object, problems: list[Problem]
) -> tuple[CommentedMap | None, list[Problem]]:
    if problems:
        return None, problems
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
    return raw, []


# --- pydantic errors --------------------------------------------------------------------------


# Tagged unions (conditions, `at:`) put the tag into an error's location; these are the tags,
# with the model each stands for (None: not a model).
_TAGS: dict[str, type[BaseModel] | None] = {
    "event": EventCondition,
    "customer": CustomerCondition,
    "step": StepCondition,
    "reachable": ReachableCondition,
    "all": AllCondition,
    "any": AnyCondition,
    "not": NotCondition,
    "anchor": Anchor,
    "duration": None,
    "policy": None,
    "reentry-after": ReentryAfter,
}


_CONDITION_KINDS = ("event", "customer", "step", "reachable", "all", "any", "not")


def _is_taggedposition(loc: tuple[str | int, ...], index: int) -> bool:
    """Whether loc[index] is a union tag: it follows an `if`/`not`/`at` key or an item of
    `all`/`any`."""
    if index == 0 or not isinstance(loc[index], str) or loc[index] not in _TAGS:
        return False
    before = loc[index - 1]
    if before in ("if", "not", "at", "reentry"):
        return True
    return isinstance(before, int) and index >= 2 and loc[index - 2] in ("all", "any")


def _split_tags(loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], type[BaseModel]]:
    """The location without union tags (to find the YAML node), and the model that holds the
    last key (to suggest the keys it allows)."""
    clean: list[str | int] = []
    model: type[BaseModel] = JourneySpec
    after_tag = False
    for index, part in enumerate(loc):
        if not after_tag and _is_taggedposition(loc, index):
            model = _TAGS[str(part)] or model
            after_tag = True
            continue
        after_tag = False
        clean.append(part)
        if index < len(loc) - 1 and isinstance(part, str):
            model = _field_model(model, part) or model
    return tuple(clean), model


def _field_model(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            for candidate in _models_in(field.annotation):
                return candidate
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found += _models_in(arg)
    return found


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
    tagged = tuple(
        p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))
    )
    loc, model = _split_tags(tagged)
    kind = error["type"]
    if kind == "extra_forbidden":
        line, col = position(raw, loc, key=True)
        allowed = [f.alias or n for n, f in model.model_fields.items()]
        name = str(loc[-1])
        parent = _where(raw, loc[:-1]) if len(loc) > 1 else "a journey"
        return Problem(
            file,
            line,
            col,
            "unknown-key",
            f"unknown key '{name}' in {parent}{did_you_mean(name, allowed)}",
        )
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, KeyProblem):  # a model check naming the key at fault: caret on it
        line, col = position(raw, (*loc, *cause.keys), key=True)
        where = f"{_where(raw, loc)}: " if loc else ""  # a journey-level key names itself
        return Problem(file, line, col, "bad-value", f"{where}{cause}")
    line, col = position(raw, loc)
    if kind == "missing":
        parent = _where(raw, loc[:-1]) if len(loc) > 1 else "the journey"
        return Problem(file, line, col, "missing-key", f"{parent} needs the key '{loc[-1]}'")
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "reentry":
        message = f"'{error['input']}' {message}"
    if kind == "condition" and isinstance(error.get("input"), dict) and error["input"]:
        first = str(next(iter(error["input"])))
        message += f"; '{first}' is not one{did_you_mean(first, _CONDITION_KINDS)}"
    if kind == "string_pattern_mismatch" and loc[-1] == "from":
        message = f"'{error['input']}' is not a date column; write event.COLUMN or customer.COLUMN"
    elif kind == "string_pattern_mismatch":
        message = (
            f"'{error['input']}' is not a valid name; use lower-case letters, digits, '-', '_'"
        )
    if kind == "too_short":
        least = (error.get("ctx") or {}).get("min_length", 1)
        noun = "step" if loc[-1] == "steps" else "item"
        message = f"needs at least {least} {noun}{'s' if least != 1 else ''}"
    duration = "duration" in message or "write a number and a unit" in message
    code = "bad-duration" if duration else "bad-value"
    return Problem(file, line, col, code, f"{_where(raw, loc)}: {message}")
