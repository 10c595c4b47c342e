"""A journey named on the command line: by its name (`first-purchase-care`) or by a file
(`journeys/first_purchase.yaml`, or an edited copy elsewhere to compare with)."""

from __future__ import annotations

import os
from pathlib import Path

from siyu.errors import ConfigError
from siyu.language.channel_kinds import ToolProject
from siyu.language.loader import load_journey
from siyu.language.problems import did_you_mean
from siyu.language.spec import JourneySpec, Step
from siyu.project import Project


def _is_file_ref(name_or_file: str) -> bool:
    """A journey's name is a slug (no '/', no '.'); anything else names a file."""
    return name_or_file.endswith((".yaml", ".yml")) or "/" in name_or_file or os.sep in name_or_file


def _journey_file(name_or_file: str) -> Path:
    """The file, if it can be a journey: a regular .yaml/.yml file (never a device, a
    folder or another kind of file, whose content an error excerpt would print)."""
    path = Path(name_or_file)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"'{name_or_file}' is not a journey file (.yaml or .yml)")
    if not path.is_file():
        raise ConfigError(f"no journey file '{name_or_file}'")
    return path


def resolve_journey(project: Project, name_or_file: str) -> JourneySpec:
    """For the tools that only read a journey (preview, graph, simulate): its name, or any
    journey file (an edited copy to compare with)."""
    tools = ToolProject.of(project)
    if _is_file_ref(name_or_file):
        # A file named on the command line (a draft to compare) is read only from inside the
        # project, as confined as journeys/ itself.
        return load_journey(_journey_file(name_or_file), tools.catalog(), project.root)
    return tools.journey(name_or_file)


def project_journey(project: Project, name_or_file: str) -> JourneySpec:
    """For the commands that work on the journey the database knows (tick, summary,
    explain, report): a name, or a file of the project's journeys/ standing for the
    journey it declares. Checked as `siyu tick` checks it (channels.yaml, every file)."""
    if not _is_file_ref(name_or_file):
        return project.journey(name_or_file)
    path = _journey_file(name_or_file)
    inside = path.resolve().parent == project.journeys_dir.resolve()
    if not inside:
        raise ConfigError(
            f"'{name_or_file}' is not in {project.journeys_dir}: this command works on the "
            "project's journeys (name one, or its file there); preview, graph and simulate "
            "also take a copy elsewhere"
        )
    return project.journey(load_journey(path, project.catalog(), project.journeys_dir).journey)


def journey_step(spec: JourneySpec, step: str) -> Step:
    """The journey's step named on the command line; a misspelt one gets a did-you-mean."""
    ids = [s.id for s in spec.steps]
    if step not in ids:
        raise ConfigError(
            f"journey '{spec.journey}' has no step '{step}'{did_you_mean(step, ids)} "
            f"(steps: {', '.join(ids)})"
        )
    return spec.step(step)
