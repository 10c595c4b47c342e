"""Checks a message template before any customer sees it: Jinja syntax (with the line),
variables other than the ones the engine provides, and fields of `event` / `customer` that
the journey's data does not have."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes

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


def _column_of(line_text: str, needle: str) -> int:
    found = line_text.find(needle)
    return found + 1 if found >= 0 else 1


def check_template_fields(
    path: Path, available: Mapping[str, tuple[str, ...]], why: str
) -> Iterator[Problem]:
    """`event.<column>` / `customer.<column>` a template uses that the data does not provide
    (the entry event's source and the customer row); `why` says where the columns come from."""
    try:
        source = path.read_text(encoding="utf-8")
        parsed = make_environment(path.parent).parse(source)
    except (UnicodeDecodeError, TemplateSyntaxError):
        return  # check_template reports these
    lines = source.splitlines()
    for node in parsed.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not isinstance(target, nodes.Name) or target.name not in available:
            continue
        if isinstance(node, nodes.Getattr):
            field = str(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if not isinstance(node.arg.value, str):
                continue
            field = node.arg.value
        else:
            continue
        columns = available[target.name]
        if field in columns:
            continue
        line_text = lines[node.lineno - 1] if 0 < node.lineno <= len(lines) else ""
        yield Problem(
            str(path),
            node.lineno,
            _column_of(line_text, f"{target.name}.{field}"),
            "unknown-field",
            f"'{target.name}.{field}' is not provided {why}"
            f"{did_you_mean(field, columns)} ({target.name}: {', '.join(columns)})",
        )
