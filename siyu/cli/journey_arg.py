"""A journey named on the command line: by its name (`first-purchase-care`) or by a file
(`journeys/first_purchase.yaml`, or an edited copy elsewhere to compare with)."""

from __future__ import annotations

from pathlib import Path

from siyu.errors import ConfigError
from siyu.language.channel_kinds import ToolProject
from siyu.language.loader import load_journey
from siyu.language.spec import JourneySpec
from siyu.project import Project


def _is_file_ref(name_or_file: str) -> bool:
    return (
        name_or_file.endswith((".yaml", ".yml"))
        or "/" in name_or_file
        or Path(name_or_file).is_file()
    )


def resolve_journey(project: Project, name_or_file: str) -> JourneySpec:
    """For the tools that only read a journey (preview, graph, simulate): any file will do."""
    tools = ToolProject.of(project)
    if _is_file_ref(name_or_file):
        path = Path(name_or_file)
        if not path.is_file():
            raise ConfigError(f"no journey file '{name_or_file}'")
        return load_journey(path, tools.catalog())
    return tools.journey(name_or_file)


def project_journey(project: Project, name_or_file: str) -> JourneySpec:
    """For the commands that work on the journey the database knows (tick, summary,
    explain, report): a name, or a file of the project's journeys/ standing for the
    journey it declares. Checked as `siyu tick` checks it (channels.yaml, every file)."""
    if not _is_file_ref(name_or_file):
        return project.journey(name_or_file)
    path = Path(name_or_file)
    if not path.is_file():
        raise ConfigError(f"no journey file '{name_or_file}'")
    inside = path.resolve().parent == project.journeys_dir.resolve()
    if not inside:
        raise ConfigError(
            f"'{name_or_file}' is not in {project.journeys_dir}: this command works on the "
            "project's journeys (name one, or its file there); preview, graph and simulate "
            "also take a copy elsewhere"
        )
    return project.journey(load_journey(path, project.catalog()).journey)
