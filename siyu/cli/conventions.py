"""What every `siyu` command does the same way (docs/cli.md):

- a journey is named by its `journey:` name or by its file (siyu/cli/journey_arg.py);
- a customer by its id or its external id (siyu/customer_ref.py);
- a command that reads the database takes `--database`, default `SIYU_DATABASE_URL`, else
  `sqlite:///var/siyu.db`;
- a time without a zone is read in the journey's zone; a date alone is its midnight;
- a file the CLI writes goes under `var/` unless an output path is given;
- a user's mistake is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup

from siyu.errors import ConfigError, SiyuError
from siyu.settings import DEFAULT_DATABASE_URL, overridden, settings

F = TypeVar("F", bound=Callable[..., Any])

DATABASE_HELP = (
    f"e.g. sqlite:///var/demo.db; default: $SIYU_DATABASE_URL, else {DEFAULT_DATABASE_URL}"
)
NOW_HELP = (
    "the moment to act at: 2026-10-10 (midnight), 2026-10-10T09:00 (both in the journey's "
    "time zone) or with an offset, 2026-10-10T09:00+08:00; default: now"
)
CUSTOMER_HELP = "the customer's id (42) or external id (CRM0000042)"
JOURNEY_HELP = "the journey's name (its `journey:` key) or its YAML file"


def fail(message: str) -> None:
    """One line on stderr (no markup: the user's input is printed as typed), exit 1."""
    Console(stderr=True, soft_wrap=True).print(message, markup=False, highlight=False)
    raise typer.Exit(1)


def shown_url(url: str) -> str:
    """A database URL as it may be printed: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable URL)"


def _schema_error(error: Exception) -> str | None:
    """The one line for a database that has no siyu tables (never migrated), else None."""
    text = str(getattr(error, "orig", error)).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        from siyu.storage.engine import database_url

        return (
            f"the database {shown_url(database_url())} has no siyu tables yet: "
            "run `siyu db upgrade` first (with the same --database or SIYU_DATABASE_URL)"
        )
    return None


def _database_error(error: Exception) -> str:
    from siyu.storage.engine import database_url

    first = str(getattr(error, "orig", error)).strip().splitlines()[0:1]
    return f"cannot use the database {shown_url(database_url())}: {''.join(first)}"


@contextmanager
def _database_env(database: str | None) -> Iterator[None]:
    """Point this command (and the Prefect flow it runs in-process, and the processes it
    starts) at `database`: the flag overrides the setting SIYU_DATABASE_URL."""
    if database is None:
        yield
        return
    with overridden(database_url=database):
        yield


def check_database_url(url: str) -> None:
    """A URL SQLAlchemy can use here, or one line saying why not (before any connection)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as error:
        raise ConfigError(
            f"cannot use the database URL {shown_url(url)!r} ({error}); write it like "
            "sqlite:///var/demo.db or postgresql+psycopg://user@host/db"
        ) from None


def cli_command(*, database: bool = False, tables: bool = False) -> Callable[[F], F]:
    """Wrap a command: user errors become one line; with `database`, it gains `--database`;
    with `tables`, it refuses a database without siyu's tables before doing anything."""

    def wrap(function: F) -> F:
        # Evaluated now, in the command's module (its annotations are strings there).
        signature = inspect.signature(function, eval_str=True)
        adds = database and "database" not in signature.parameters  # it may have its own

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            url = kwargs.pop("database", None) if adds else None
            if url is not None and not url.strip():
                fail("--database is empty: give a URL, e.g. sqlite:///var/demo.db")
            settings.cache_clear()  # a command reads the settings of its own environment
            try:
                with _database_env(url):
                    return _guarded(_prepared(function, database, tables), *args, **kwargs)
            finally:
                settings.cache_clear()

        if adds:
            option = inspect.Parameter(
                "database",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    str | None,
                    typer.Option(help=DATABASE_HELP, show_default=False, metavar="URL"),
                ],
            )
            params = [
                p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                for p in signature.parameters.values()
            ]
            run.__signature__ = signature.replace(parameters=[*params, option])  # type: ignore[attr-defined]
        else:
            run.__signature__ = signature  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return wrap


def _prepared(function: Callable[..., Any], database: bool, tables: bool) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        from siyu.storage.engine import database_url

        if database:
            check_database_url(database_url())
        if tables:
            require_schema()
        return function(*args, **kwargs)

    return run


def _guarded(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    try:
        return function(*args, **kwargs)
    except SiyuError as error:
        fail(str(error))
    except (ArgumentError, NoSuchModuleError) as error:
        fail(f"not a database URL ({error}); e.g. sqlite:///var/demo.db")
    except DBAPIError as error:
        fail(_schema_error(error) or _database_error(error))
    except OSError as error:  # a file to read or write: missing folder, no permission, full
        where = f": {error.filename}" if error.filename else ""
        fail(f"{error.strerror or error}{where}")


def parse_moment(text: str | None, zone: str, *, option: str = "--now") -> datetime:
    """A moment typed on the command line, as an aware UTC datetime. Without an offset it
    is read in `zone` (the journey's); a date alone is that day's midnight there."""
    if text is None or text.strip().lower() in ("", "now"):
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option} '{text}' is not a date or time; write it like 2026-10-10 or "
            f"2026-10-10T09:00 (read in {zone}), or 2026-10-10T09:00+08:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ConfigError(f"{option} '{text}' is out of range (years 1 to 9999)") from None


def missing_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite file that does not exist (connecting would create it)."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return False
    return not Path(url.removeprefix("sqlite:///").split("?")[0]).is_file()


def output_path(given: Path | None, name: str) -> Path:
    """Where a command writes a file: the path given, else var/<name> in the project (the
    repository itself stays clean)."""
    if given is not None:
        return given
    from siyu.project import Project

    target = Project.find().root / "var" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _user_error_names(kind: type[BaseException] = SiyuError) -> set[str]:
    names = {kind.__name__}
    for sub in kind.__subclasses__():
        names |= _user_error_names(sub)
    return names


class _DropUserErrors(logging.Filter):
    """Prefect logs a failed flow run's exception with its traceback, then its final state
    naming it; a user's mistake (SiyuError) is shown once, by the CLI, as one line."""

    def __init__(self) -> None:
        super().__init__()
        self.names = _user_error_names()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SiyuError):
            return False
        message = record.getMessage()
        return not any(f"exception: {name}:" in message for name in self.names)


@contextmanager
def local_prefect() -> Iterator[None]:
    """Prefect settings for a flow the CLI runs on Prefect's local API: no usage data leaves
    the machine, wherever the command runs from (prefect.toml applies only when it runs in
    the repository root). The local API server Prefect starts inherits these settings."""
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    with temporary_settings(updates={PREFECT_SERVER_ANALYTICS_ENABLED: False}):
        yield


@contextmanager
def quiet_user_errors_in_prefect() -> Iterator[None]:
    drop = _DropUserErrors()
    loggers = [logging.getLogger(n) for n in ("prefect", "prefect.flow_runs", "prefect.task_runs")]
    handlers = [h for lg in loggers for h in lg.handlers]
    for target in [*loggers, *handlers]:
        target.addFilter(drop)
    try:
        yield
    finally:
        for target in [*loggers, *handlers]:
            target.removeFilter(drop)


def require_schema() -> None:
    """Refuse, in one line, a database that `siyu db upgrade` has not set up (or not fully):
    a tick on it would fail deep inside the flow with SQL errors."""
    from sqlalchemy import inspect as inspect_db

    from siyu.storage.engine import database_url, make_engine

    url = database_url()
    if missing_sqlite_file(url):
        raise ConfigError(
            f"no database at {url.removeprefix('sqlite:///')}: run `siyu db upgrade` to create "
            "it, or point --database (or SIYU_DATABASE_URL) at yours"
        )
    engine = make_engine(url)
    try:
        tables = set(inspect_db(engine).get_table_names())
        current = _current_revision(engine) if "alembic_version" in tables else None
    finally:
        engine.dispose()
    if not {"customers", "deliveries", "enrollments"} <= tables:
        raise ConfigError(
            f"the database {shown_url(url)} has no siyu tables yet: run `siyu db upgrade` "
            "first (with the same --database or SIYU_DATABASE_URL)"
        )
    head = _head_revision()
    if current is not None and current != head:
        raise ConfigError(
            f"the database {shown_url(url)} is at migration {current}, this siyu needs "
            f"{head}: run `siyu db upgrade`"
        )


def _current_revision(engine: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    from siyu.storage.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# --- help pages ---------------------------------------------------------------------------
# typer 0.29 writes a required argument as `{journey}` in the usage line and a flag's type as
# `<bool>` (even `--help <bool>`); these classes write JOURNEY and nothing.


def _plain_flags(params: list[Any]) -> None:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class SiyuCommand(TyperCommand):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name += "..." if param.nargs != 1 else ""
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_flags(params)
        for param in params:
            if isinstance(param, TyperArgument) and param.metavar is None:
                param.metavar = (param.name or "").upper()
        return params


class SiyuGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_flags(params)
        return params


class SiyuTyper(typer.Typer):
    """A Typer whose commands and groups print clean help pages (see above)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", SiyuGroup)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", SiyuCommand)
        return super().command(name, **kwargs)
