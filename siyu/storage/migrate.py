"""Run the Alembic migrations programmatically (the CLI's `siyu db upgrade` and the tests).

The migrations belong to the database, not to the installed package: they are in the project's
db/migrations/ (`SIYU_PROJECT_DIR`, else the current directory), else in the checkout this
package was installed from (a project folder that holds only journeys and templates).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from siyu.errors import ConfigError
from siyu.settings import settings
from siyu.storage.engine import database_url

_CHECKOUT = Path(__file__).resolve().parents[2]
_MIGRATIONS = Path("db") / "migrations"


def migrations_dir() -> Path:
    project = settings().project_dir or Path.cwd()
    for base in (project, _CHECKOUT):
        if (base / _MIGRATIONS / "env.py").is_file():
            return base / _MIGRATIONS
    raise ConfigError(f"no {_MIGRATIONS}/env.py in {project} or in {_CHECKOUT}")


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # configparser treats % as interpolation; URLs carry %-escapes (search_path options).
    config.set_main_option("sqlalchemy.url", (url or database_url()).replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
