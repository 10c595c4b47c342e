"""A problem found in a journey or template file, and how it is shown to a marketer:
`file:line:col: code: message`, the source lines around it and a caret under the column."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from siyu.errors import SiyuError
from siyu.language.project_files import admitted_text


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when the problem is about the whole file
    column: int  # 1-based
    code: str  # stable identifier, e.g. unknown-key, bad-duration
    message: str

    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.line else self.file


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' — did you mean X?' / ' (possible: a, b)' / '' for a word not among `choices`."""
    matches = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if len(matches) == 1:
        return f" — did you mean '{matches[0]}'?"
    if matches:
        return " (possible: " + ", ".join(f"'{m}'" for m in matches) + ")"
    return ""


def _excerpt(problem: Problem, context: int = 2) -> str:
    if not problem.line:
        return ""
    # Only a file the confined reader admitted (never a file outside journeys/ or templates/).
    text = admitted_text(problem.file)
    if text is None:
        return ""
    lines = text.splitlines()
    if problem.line > len(lines):
        return ""
    first = max(1, problem.line - context)
    last = min(len(lines), problem.line + context)
    out = []
    for number in range(first, last + 1):
        out.append(f"  {number:>4} | {lines[number - 1]}")
        if number == problem.line:
            out.append("       | " + " " * (problem.column - 1) + "^")
    return "\n".join(out)


def format_problem(problem: Problem) -> str:
    head = f"{problem.location()}: {problem.code}: {problem.message}"
    excerpt = _excerpt(problem)
    return f"{head}\n{excerpt}" if excerpt else head


def format_problems(problems: list[Problem]) -> str:
    ordered = sorted(problems)
    files = {p.file for p in ordered}
    body = "\n\n".join(format_problem(p) for p in ordered)
    n, m = len(ordered), len(files)
    return f"{body}\n\n{n} error{'s' if n != 1 else ''} in {m} file{'s' if m != 1 else ''}"


class SpecError(SiyuError):
    """One or more problems in journey or settings files, shown together."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(format_problems(problems))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[Problem]]]:
        return SpecError, (self.problems,)  # rebuilt from its problems (worker processes)
