"""What the studio shows of a project: each journey file checked (its journey, or its
problems) with the ledger's figures for the journey. Nothing here writes a file or the
database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from siyu.language.problems import Problem
from siyu.language.spec import JourneySpec
from siyu.project import Project
from siyu.reports.step_summary import JourneySummary, summarize
from siyu.storage.engine import make_sessionmaker
from siyu.storage.models import Journey
from siyu.studio.checking import check_on_disk
from siyu.studio.database import existing_database


@dataclass
class JourneyFile:
    """One file of journeys/: `key` (its name without .yaml) is how the page is addressed."""

    key: str
    path: Path
    spec: JourneySpec | None
    problems: list[Problem] = field(default_factory=list)
    figures: JourneySummary | None = None  # None: no database, or the journey never ran
    last_tick: datetime | None = None

    @property
    def valid(self) -> bool:
        return self.spec is not None and not self.problems


def journey_files(project: Project, database_url: str | None) -> list[JourneyFile]:
    """Every file of journeys/ checked as `siyu validate` checks it, with its figures."""
    files = []
    for path in project.journey_files():
        checked = check_on_disk(project, path)[1]
        files.append(JourneyFile(path.stem, path, checked.spec, checked.problems))
    add_figures(files, database_url)
    return files


def add_figures(files: list[JourneyFile], database_url: str | None) -> None:
    """The ledger's counts per journey; a database that is missing, not migrated or
    unreachable leaves the figures out (the page says so) instead of failing the page."""
    engine = existing_database(database_url)
    if engine is None:
        return
    try:
        with engine.connect() as connection:
            if "deliveries" not in inspect(connection).get_table_names():
                return
        with make_sessionmaker(engine)() as session:
            for entry in files:
                if entry.spec is None:
                    continue
                entry.figures = summarize(session, entry.spec)
                entry.last_tick = session.scalar(
                    select(func.max(Journey.enrolled_through)).where(
                        Journey.name == entry.spec.journey
                    )
                )
    except SQLAlchemyError:
        return
    finally:
        engine.dispose()
