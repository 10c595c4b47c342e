"""Exception families. User errors (a bad journey file, a missing template, an unreachable
database) are printed as plain messages without a traceback; anything else is a bug.

    SiyuError                 user-facing; the CLI prints str(error) and exits 1
    ├── SpecError             one or more problems in journey files (carries Problem list)
    ├── TemplateNotFound      a template a step names does not exist
    └── ConfigError           bad settings, channels file, environment
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from siyu.language.problems import Problem


class SiyuError(Exception):
    """An error the user caused and can fix; shown without a traceback."""


class SpecError(SiyuError):
    def __init__(self, problems: list[Problem]) -> None:
        from siyu.language.problems import format_problems

        self.problems = problems
        super().__init__(format_problems(problems))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[Problem]]]:
        return SpecError, (self.problems,)  # rebuilt from its problems (worker processes)


class TemplateNotFound(SiyuError):
    pass


class ConfigError(SiyuError):
    pass
