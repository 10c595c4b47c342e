"""Loading a settings file (segments.yaml, alerts.yaml) with positions, and turning pydantic's
errors into `file:line:col` problems; an unknown key gets a did-you-mean against the keys
allowed at that place."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from siyu.language.bounded_yaml import load_settings_yaml
from siyu.language.positions import position
from siyu.language.problems import Problem, did_you_mean


def load_yaml(path: Path) -> Any:
    """segments.yaml or alerts.yaml, within the bounds of siyu/language/bounded_yaml.py."""
    return load_settings_yaml(path)


def validation_problems(
    path: Path, raw: Any, error: ValidationError, code: str, model: type[BaseModel]
) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not str(p).startswith("function-"))
        extra = item["type"] == "extra_forbidden"
        line, col = position(raw, loc, key=extra)
        where = ".".join(str(p) for p in loc) or "(top)"
        message = str(item["msg"]).removeprefix("Value error, ")
        if extra and loc:
            known = _keys_at(model, loc[:-1])
            message = f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), known)}"
            if known:
                message += f" (keys: {', '.join(known)})"
        problems.append(Problem(str(path), line, col, code, f"{where}: {message}"))
    return problems


def _keys_at(model: type[BaseModel], parent: tuple[Any, ...]) -> list[str]:
    current: type[BaseModel] | None = model
    for part in parent:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        current = _model_in(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Model`, `list[Model]`, `Model | None`..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType) or get_args(annotation):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
