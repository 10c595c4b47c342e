"""Checks a message template before any customer sees it: Jinja syntax (with the line), and
variables other than the ones the engine provides."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta

from siyu.language.problems import Problem, did_you_mean
from tasks.render import CONTEXT_NAMES, make_environment


def check_template(path: Path) -> Iterator[Problem]:
    file = str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        yield Problem(file, 0, 0, "not-utf8", f"the template is not UTF-8 text ({error})")
        return
    environment = make_environment(path.parent)
    try:
        parsed = environment.parse(source)
    except TemplateSyntaxError as error:
        yield Problem(file, error.lineno or 1, 1, "template-syntax", error.message or str(error))
        return
    for name in sorted(meta.find_undeclared_variables(parsed)):
        if name not in CONTEXT_NAMES:
            line = next((n for n, text in enumerate(source.splitlines(), 1) if name in text), 1)
            yield Problem(
                file,
                line,
                1,
                "unknown-variable",
                f"'{name}' is not available in templates{did_you_mean(name, CONTEXT_NAMES)}"
                f" (available: {', '.join(CONTEXT_NAMES)})",
            )
