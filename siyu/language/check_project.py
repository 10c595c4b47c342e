"""`siyu validate`: every journey file with the loader's checks plus the content rules
(siyu.language.lint), and every template in templates/, including those no journey uses yet.

The content rules run here and in `siyu deploy`, not in the loader the engine uses: the
engine's own tests run journeys with deliberately bad templates, and the engine still fails
such a message at render time on its own.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from siyu.language.channel_kinds import ToolProject
from siyu.language.lint import lint_journey
from siyu.language.lint_config import load_lint_config
from siyu.language.loader import (
    check_journey_file,
    check_journey_yaml,
    journey_yaml_text,
    read_journey_yaml,
)
from siyu.language.positions import position
from siyu.language.problems import Problem
from siyu.language.spec import JourneySpec
from siyu.language.templates_check import check_template
from siyu.project import Project, duplicate_name


def check_project(project: Project) -> tuple[dict[str, JourneySpec], list[Problem]]:
    tools = ToolProject.of(project)
    specs, problems = tools.check_all()
    catalog, config = tools.catalog(), load_lint_config(project.root)
    for path in project.journey_files():
        shown = _shown(path)
        spec, found = check_journey_file(shown, catalog, project.journeys_dir)
        if spec is None or found:
            continue  # fix the structure first; its problems are already listed
        raw, _ = read_journey_yaml(shown, project.journeys_dir)
        if raw is None:
            continue
        problems += lint_journey(
            str(shown), spec, project.templates_dir, partial(position, raw), config
        )
    for template in sorted(project.templates_dir.glob("*.j2")):
        problems += check_template(_shown(template), project.templates_dir)
    return specs, sorted(set(problems))


def check_journey_edit(
    project: Project, path: Path, text: str
) -> tuple[JourneySpec | None, list[Problem]]:
    """What `siyu validate` would say of the journey file `path` if it held `text` (the
    studio's editor): the loader's checks, the content rules, and whether another file uses
    the journey's name. Nothing is written."""
    shown = str(_shown(path))
    raw, problems = journey_yaml_text(shown, text)
    spec, problems = check_journey_yaml(shown, raw, problems, ToolProject.of(project).catalog())
    if spec is None or raw is None or problems:
        return spec, problems  # fix the structure first, as check_project does
    config, locate = load_lint_config(project.root), partial(position, raw)
    problems = list(lint_journey(shown, spec, project.templates_dir, locate, config))
    named = {f.resolve() for f in project.files_named(spec.journey)} | {path.resolve()}
    if len(named) > 1:  # as check_all reports it: at the top of the file, in file order
        files = [str(_shown(f)) for f in sorted(named)]
        message = duplicate_name(spec.journey, files)
        problems.append(Problem(shown, 1, 1, "duplicate-journey", message))
    return spec, sorted(set(problems))


def content_problems(project: Project, spec: JourneySpec) -> list[Problem]:
    """The content rules (广告法 terms, SMS signature and 回T退订, template fields) for one
    journey: what the flow checks before a tick, so an edit made after `siyu deploy` cannot
    reach a customer either."""
    path = project.journey_file(spec.journey)  # this journey's file only, not every file
    raw, problems = read_journey_yaml(path, project.journeys_dir)
    if raw is None:
        return problems
    config = load_lint_config(project.root)
    return sorted(
        set(
            lint_journey(
                str(_shown(path)), spec, project.templates_dir, partial(position, raw), config
            )
        )
    )


def _shown(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
