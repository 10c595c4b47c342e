"""Checks a message template before any customer sees it: Jinja syntax (with the line),
variables other than the ones the engine provides, and fields of `event` / `customer` that
the journey's data does not have."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes

from siyu.engine.render import CONTEXT_NAMES, make_environment
from siyu.language.problems import Problem, did_you_mean
from siyu.language.project_files import Refused, read_source


def check_template(path: Path, folder: Path | None = None) -> Iterator[Problem]:
    """Problems of the template `path`, read only from inside `folder` (default: its own
    folder; the project's templates/)."""
    file = str(path)
    folder = folder or path.parent
    try:
        source = read_source(folder, path)
    except Refused as refused:
        yield Problem(file, 0, 0, refused.code, refused.message)
        return
    environment = make_environment(folder)
    try:
        parsed = environment.parse(source)
        names = meta.find_undeclared_variables(parsed)
    except TemplateSyntaxError as error:
        yield Problem(file, error.lineno or 1, 1, "template-syntax", error.message or str(error))
        return
    except (RecursionError, MemoryError):
        yield Problem(file, 0, 0, "too-deep", "the template is nested too deeply to read")
        return
    for name in sorted(names):
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
    path: Path, available: Mapping[str, tuple[str, ...]], why: str, folder: Path | None = None
) -> Iterator[Problem]:
    """`event.<column>` / `customer.<column>` a template uses that the data does not provide
    (the entry event's source and the customer row); `why` says where the columns come from."""
    folder = folder or path.parent
    try:
        source = read_source(folder, path)
        parsed = make_environment(folder).parse(source)
    except (Refused, TemplateSyntaxError, RecursionError, MemoryError):
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
