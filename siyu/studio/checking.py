"""A journey's text as the editor holds it, checked with `siyu validate`'s rules
(siyu.language.check_project.check_journey_edit): the journey, or its problems."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from siyu.errors import SiyuError
from siyu.language.check_project import check_journey_edit
from siyu.language.problems import Problem, SpecError
from siyu.language.project_files import Refused, check_size, read_source
from siyu.language.spec import JourneySpec
from siyu.project import Project


@dataclass(frozen=True)
class Checked:
    path: Path
    spec: JourneySpec | None
    problems: list[Problem]

    @property
    def valid(self) -> bool:
        return self.spec is not None and not self.problems

    def in_file(self, problem: Problem) -> bool:
        """Whether `problem` is at a line of this journey's file (a template's problem is at
        a line of the template)."""
        return Path(problem.file).resolve() == self.path.resolve()


def check_text(project: Project, path: Path, text: str) -> Checked:
    """`text` as the journey file `path` would be. A broken channels.yaml or lint.yaml is a
    problem of its own, as `siyu validate` reports it."""
    try:
        check_size(path, len(text.encode("utf-8")))
        spec, problems = check_journey_edit(project, path, text)
    except Refused as refused:
        return Checked(path, None, [Problem(str(path), 0, 0, refused.code, refused.message)])
    except SpecError as error:
        return Checked(path, None, list(error.problems))
    except SiyuError as error:
        return Checked(path, None, [Problem(str(path), 0, 0, "bad-config", str(error))])
    return Checked(path, spec, problems)


def check_on_disk(project: Project, path: Path) -> tuple[str | None, Checked]:
    """The journey file's text and its check; None and the reason as its one problem when
    the file may not be read (a link out of journeys/, too large, not UTF-8 ...)."""
    try:
        text = read_source(project.journeys_dir, path)
    except Refused as refused:
        problem = Problem(str(path), 0, 0, refused.code, refused.message)
        return None, Checked(path, None, [problem])
    return text, check_text(project, path, text)
