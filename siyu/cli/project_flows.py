"""The project's Prefect flows, loaded by entrypoint from the project directory.

flows/ and tasks/ are the Prefect project's code, next to journeys/ and prefect.yaml, not
installed packages: a Prefect worker imports them from the project's root (prefect.yaml's
`working_dir`), and so does the CLI, never statically. The project directory comes from
Project.find (SIYU_PROJECT_DIR, else the current directory); a project folder that holds only
journeys and templates uses the flows of the checkout siyu was installed from (`pip install -e`).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from siyu.deploy.prefect_yaml import ENTRYPOINT
from siyu.errors import ConfigError
from siyu.project import Project

_CHECKOUT = Path(__file__).resolve().parents[2]


def code_root(project: Project) -> Path:
    """Where the project's flows/ and tasks/ are."""
    for base in (project.root, _CHECKOUT):
        if (base / "flows").is_dir() and (base / "tasks").is_dir():
            return base
    raise ConfigError(f"{project.root} has no flows/ and tasks/ folders (the Prefect flows)")


def project_flow(project: Project, entrypoint: str = ENTRYPOINT) -> Any:
    """The flow an entrypoint names (`flows/journey_flow.py:journey_tick`), imported as the
    module `flows.journey_flow` with the project's root on sys.path, as a worker imports it."""
    path, _, name = entrypoint.partition(":")
    root = str(code_root(project))
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)
