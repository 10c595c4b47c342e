"""siyu's settings: every `SIYU_*` environment variable, read here and nowhere else.

`settings()` is the one reader (cached; a program or test that changes a variable calls
`settings.cache_clear()`). CLI flags and flow parameters override a setting explicitly: e.g.
`siyu tick --database URL`, `journey_tick(partitions=4)`. An empty variable counts as unset.

The bounds on journeys, templates and rendering (`SIYU_MAX_*`, siyu/limits.py) and on one
import (`SIYU_IMPORT_*`, siyu/importer/limits.py) are read by `from_environment` below, each
by its own cached reader. The secrets of the channels are read under the names channels.yaml
gives them (`secret_env`, siyu/channels/secrets.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from siyu.errors import ConfigError

PREFIX = "SIYU_"
DEFAULT_DATABASE_URL = "sqlite:///var/siyu.db"
T = TypeVar("T")
# where a step's partitions run (tasks/partition_runners.py)
PartitionRunner = Literal["threads", "processes", "process-pool", "dask"]


class SettingsError(ConfigError, ValueError):
    """A `SIYU_*` variable with a value siyu cannot use: one line naming it."""


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    """Each field is the variable SIYU_<FIELD NAME>, with its default."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL, description="the database (SQLAlchemy URL); --database overrides"
    )
    project_dir: Path | None = Field(
        None, description="the project's root (journeys/, templates/); default: the cwd"
    )
    channel_base_url: str | None = Field(
        None, description="one base URL for every channel (the sandbox); default: channels.yaml's"
    )
    step_partitions: int = Field(
        1, ge=1, description="partitions of a send step's scan; journey_tick(partitions=) overrides"
    )
    partition_runner: PartitionRunner = Field(
        "threads",
        description="where a step's partitions run: threads, processes (siyu's worker pool), "
        "process-pool (Prefect's ProcessPoolTaskRunner) or dask (prefect-dask); "
        "journey_tick(runner=) overrides",
    )
    dask_address: str | None = Field(
        None,
        description="the dask.distributed scheduler of runner `dask` (tcp://host:8786); "
        "unset: a temporary local cluster for each flow run",
    )
    batch_size: int = Field(
        500, ge=1, le=10_000, description="enrollments a send step handles per transaction"
    )
    late_events_hours: float = Field(
        168.0,
        gt=0,
        le=24 * 366,
        description="how late an entry or exit event may be imported and still count; each "
        "tick reads the events of this window again",
    )
    marketer_sql_timeout: float = Field(
        30.0, gt=0, le=86400, description="seconds one statement of a journey's own SQL may run"
    )
    max_duration_days: int = Field(
        3660, gt=0, le=36600, description="the longest duration a journey may write, in days"
    )
    unsubscribe_secret: SecretStr | None = Field(
        None, description="signs unsubscribe links (16+ characters)"
    )
    link_secret: SecretStr | None = Field(
        None, description="signs tracked links (16+ characters); default: unsubscribe_secret"
    )
    studio_token: SecretStr | None = Field(
        None,
        description="the token `siyu studio` asks for when bound to an address other than "
        "loopback (16+ characters); default: a new one, printed at the start",
    )
    link_base_url: str = Field(
        "http://127.0.0.1:8765", description="where unsubscribe and tracked links point"
    )
    inbox_dir: Path | None = Field(
        None, description="the data pipeline's inbox of CSV files; default: <project>/inbox"
    )
    sandbox_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="the sandbox gateway's request size limit"
    )
    # FULL makes every commit durable across a power cut: a `sent` receipt must never be lost
    # after the provider took the message, or the next tick sends it again. OFF is for
    # throwaway databases (the test suite): a commit then costs no disk flush.
    sqlite_synchronous: Annotated[
        Literal["OFF", "NORMAL", "FULL", "EXTRA"], BeforeValidator(_upper)
    ] = Field("FULL", description="SQLite's fsync level (PRAGMA synchronous) per connection")


def variable(field: str) -> str:
    """The environment variable of a Settings field."""
    if field not in Settings.model_fields:
        raise KeyError(f"no setting {field!r}")
    return PREFIX + field.upper()


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings in force, read from the environment once (see the module's docstring)."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]  # a secret is any string: never the one refused here
        name = variable(str(first["loc"][0])) if first["loc"] else "a SIYU_ variable"
        value = os.environ.get(name, "")[:40]
        raise SettingsError(
            f"{name}={value!r}: {first['msg'][:1].lower()}{first['msg'][1:]}"
        ) from None


def export(**values: str) -> None:
    """Set settings for this process and the processes it starts (their variables), e.g. the
    database the demo made."""
    for field, value in values.items():
        os.environ[variable(field)] = value
    settings.cache_clear()


def environment() -> dict[str, str]:
    """This process's environment, for a worker process to adopt
    (siyu/engine/partition_workers.py)."""
    return dict(os.environ)


def adopt(environment: Mapping[str, str]) -> None:
    """Replace this process's environment with `environment` (a worker forked from a server
    started earlier takes its pool's), and read the settings again."""
    os.environ.clear()
    os.environ.update(environment)
    settings.cache_clear()


@contextmanager
def overridden(**values: str) -> Iterator[None]:
    """Settings set for a block (a CLI flag over its variable), restored afterwards."""
    before = {field: os.environ.get(variable(field)) for field in values}
    export(**values)
    try:
        yield
    finally:
        for field, value in before.items():
            if value is None:
                os.environ.pop(variable(field), None)
            else:
                os.environ[variable(field)] = value
        settings.cache_clear()


def from_environment(defaults: type[T], variables: Mapping[str, str]) -> T:
    """`defaults` (a dataclass of positive numbers) with each field overridden by its
    environment variable in `variables` when set; a bad value is one line naming it."""
    values: dict[str, float | int] = {}
    for spec in fields(defaults):  # type: ignore[arg-type]
        name = variables[spec.name]
        raw = os.environ.get(name)
        if raw is None or not raw.strip():
            continue
        kind = float if isinstance(spec.default, float) else int
        try:
            value = kind(raw)
        except ValueError:
            what = "a number" if kind is float else "a whole number"
            raise ConfigError(f"{name}={raw[:40]!r} is not {what}") from None
        if value <= 0:
            raise ConfigError(f"{name} must be greater than 0 (got {raw})")
        values[spec.name] = value
    return defaults(**values)
