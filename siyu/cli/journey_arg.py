"""A journey named on the command line: by its name (`first-purchase-care`) or by a file
(`journeys/first_purchase.yaml`, or an edited copy elsewhere to compare with)."""

from __future__ import annotations

from pathlib import Path

from siyu.language.channel_kinds import ToolProject
from siyu.language.loader import load_journey
from siyu.language.spec import JourneySpec
from siyu.project import Project


def resolve_journey(project: Project, name_or_file: str) -> JourneySpec:
    tools = ToolProject.of(project)
    if name_or_file.endswith((".yaml", ".yml")) or Path(name_or_file).is_file():
        # A file named on the command line (a draft to compare) is read only from inside the
        # project, as confined as journeys/ itself.
        return load_journey(Path(name_or_file), tools.catalog(), project.root)
    return tools.journey(name_or_file)
