"""One convention across the CLI (docs/cli.md), each checked over every command it applies to.
The command lists are taken from the app itself: a new command fails here until it is
classified.

- a journey is named by its name or its file; a customer by its id or external id;
- a command that reads the database takes --database (default SIYU_DATABASE_URL);
- a time without a zone is read in the journey's zone; a bad value is one line, exit 1;
- files go under var/ unless told otherwise; did-you-mean for every misspellable name;
- errors repeat the user's input unmasked; help pages carry no `{journey}` or `<bool>`.

`siyu tick` is run with its Prefect flow replaced by a recorder where the test is about the
command line (what reaches the flow); the error cases run the real command in a subprocess,
where a traceback from Prefect would show.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import delete
from typer.testing import CliRunner, Result

from siyu.cli.main import app
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.migrate import upgrade
from siyu.storage.models import Customer
from tests.conftest import fresh_database_url
from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = (
    "journeys",
    "templates",
    "channels.yaml",
    "policies.yaml",
    "segments.yaml",
    "alerts.yaml",
)
JOURNEY = "first-purchase-care"
JOURNEY_FILE = "journeys/first_purchase.yaml"


# --- the commands, from the app ---------------------------------------------------------------


def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path


ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = sorted(_leaves(ROOT_COMMAND))


def _command(path: tuple[str, ...]) -> Any:
    command: Any = ROOT_COMMAND
    for name in path:
        command = command.commands[name]
    return command


def _params(path: tuple[str, ...]) -> set[str]:
    return {p.name or "" for p in _command(path).params}


# Commands that read or write the database. `demo` is not one: it creates its own SQLite
# file (its --database is that file, recreated).
DATABASE_COMMANDS = {
    ("tick",),
    ("summary",),
    ("explain",),
    ("resolve",),
    ("unsubscribe",),
    ("db", "upgrade"),
    ("db", "seed"),
    ("preview",),
    ("simulate",),
    ("import",),
    ("report",),
    ("clicks", "sync"),
    ("segments", "refresh"),
    ("alerts", "follow-ups"),
    ("studio",),  # reads the ledger's figures; a server, so not in DATABASE_RUNS
}
NO_DATABASE = {
    ("validate",),
    ("schema",),
    ("demo",),
    ("sandbox",),
    ("graph",),
    ("deploy",),
    ("watchdog",),  # talks to the Prefect server only
    ("segments", "check"),
    ("alerts", "check"),
}


def test_every_command_is_classified() -> None:
    assert set(COMMANDS) == DATABASE_COMMANDS | NO_DATABASE
    assert not DATABASE_COMMANDS & NO_DATABASE


# --- a project and a database -----------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"), PROJECT_FILES)


def _fresh_database(where: Path, name: str) -> AbstractContextManager[str]:
    return fresh_database_url(where, name)


@pytest.fixture(scope="module")
def database(project: Path) -> Iterator[str]:
    (project / "var").mkdir(exist_ok=True)
    with _fresh_database(project / "var", "cli") as url:
        upgrade(url)
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session, session.begin():
            for number in (7, 42):
                session.add(
                    Customer(
                        id=number,
                        external_id=f"CRM{number:07d}",
                        name="王小明",
                        timezone="Asia/Shanghai",
                        created_at=datetime(2026, 9, 1, tzinfo=UTC),
                    )
                )
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def sqlite_database(project: Path, database: str) -> str:
    """`siyu simulate` copies the database it replays and so works on SQLite only: on
    PostgreSQL runs, it gets a SQLite twin of the test database."""
    if database.startswith("sqlite"):
        return database
    url = f"sqlite:///{project / 'var' / 'cli-simulate.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session, session.begin():
        for number in (7, 42):
            session.add(
                Customer(
                    id=number,
                    external_id=f"CRM{number:07d}",
                    name="王小明",
                    created_at=datetime(2026, 9, 1, tzinfo=UTC),
                )
            )
    engine.dispose()
    return url


@pytest.fixture
def db(database: str, sqlite_database: str) -> Any:
    """The database for a command: the test database, or its SQLite twin for simulate."""
    return lambda name: sqlite_database if name.startswith("simulate") else database


@pytest.fixture
def unmigrated(tmp_path: Path) -> Iterator[str]:
    """A database that exists but that `siyu db upgrade` never set up."""
    with _fresh_database(tmp_path, "empty") as url:
        engine = make_engine(url)
        with engine.connect():
            pass
        engine.dispose()
        yield url


def run(project: Path, database: str | None, *args: str, **env: str) -> Result:
    environment = {"SIYU_PROJECT_DIR": str(project), "COLUMNS": "80", **env}
    if database is not None:
        environment["SIYU_DATABASE_URL"] = database
    return CliRunner().invoke(app, list(args), env=environment)


def one_line_error(result: Result) -> str:
    """The error a user sees: exactly one line on stderr, exit 1, no traceback anywhere."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class FlowRecorder:
    """Stands in for the Prefect flow: what the CLI hands it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> dict[str, dict[str, int]]:
        self.calls.append(kwargs)
        return {"enroll": {"enrolled": 0}}


@pytest.fixture
def flow(monkeypatch: pytest.MonkeyPatch) -> FlowRecorder:
    import flows.journey_flow

    recorder = FlowRecorder()
    monkeypatch.setattr(flows.journey_flow, "journey_tick", recorder)
    return recorder


# --- journey: name or file --------------------------------------------------------------------

# Each journey command with the rest of its arguments.
JOURNEY_COMMANDS: dict[str, list[str]] = {
    "tick": ["--now", "2026-09-10T12:00+08:00"],
    "summary": [],
    "explain": ["42", "--now", "2026-09-10T12:00+08:00"],
    "resolve": [],
    "report": ["-o", "REPORT"],
    "preview": ["day3-care"],
    "graph": [],
    "simulate": ["--start", "2026-09-01", "--days", "1", "--every", "12h"],
}


def test_every_journey_command_is_covered() -> None:
    takes_journey = {path[0] for path in COMMANDS if "journey" in _params(path)}
    assert takes_journey == set(JOURNEY_COMMANDS)


def _journey_args(project: Path, tmp_path: Path, command: str, journey: str) -> list[str]:
    rest = [
        str(tmp_path / f"{journey.replace('/', '_')}.html") if a == "REPORT" else a
        for a in JOURNEY_COMMANDS[command]
    ]
    return [command, journey, *rest]


def _stable(text: str) -> str:
    """Output without what differs between two runs (timings, the report's file name), its
    lines joined: where the terminal wraps a line moves with a timing's width."""
    flat = " ".join(text.split())
    return re.sub(r"\d+(?:\.\d+)? m?s\b|wrote \S+", "", flat)


@pytest.mark.parametrize("command", sorted(JOURNEY_COMMANDS))
def test_a_journey_by_name_or_by_file(
    project: Path, db: Any, flow: FlowRecorder, tmp_path: Path, command: str
) -> None:
    by_name = run(project, db(command), *_journey_args(project, tmp_path, command, JOURNEY))
    by_file = run(
        project,
        db(command),
        *_journey_args(project, tmp_path, command, str(project / JOURNEY_FILE)),
    )
    assert by_name.exit_code == 0, by_name.output
    assert by_file.exit_code == 0, by_file.output
    assert _stable(by_name.stdout) == _stable(by_file.stdout)
    if command == "tick":
        assert [c["journey"] for c in flow.calls] == [JOURNEY, JOURNEY]


@pytest.mark.parametrize("command", sorted(JOURNEY_COMMANDS))
def test_a_misspelt_journey_gets_did_you_mean(
    project: Path, database: str, flow: FlowRecorder, tmp_path: Path, command: str
) -> None:
    result = run(
        project, database, *_journey_args(project, tmp_path, command, "first-purchse-care")
    )
    line = one_line_error(result)
    assert "no journey named 'first-purchse-care'" in line
    assert "did you mean 'first-purchase-care'?" in line
    assert not flow.calls


@pytest.mark.parametrize("command", sorted(JOURNEY_COMMANDS))
def test_a_missing_journey_file_is_one_line(
    project: Path, database: str, flow: FlowRecorder, tmp_path: Path, command: str
) -> None:
    result = run(
        project, database, *_journey_args(project, tmp_path, command, "journeys/nope.yaml")
    )
    assert "no journey file 'journeys/nope.yaml'" in one_line_error(result)


def test_a_misspelt_step_gets_did_you_mean(project: Path, database: str) -> None:
    line = one_line_error(run(project, database, "preview", JOURNEY, "day7-contnet"))
    assert "has no step 'day7-contnet' — did you mean 'day7-content'?" in line


@pytest.mark.parametrize(
    ("typed", "meant"),
    [(["summry"], "summary"), (["db", "upgarde"], "upgrade"), (["segments", "refrsh"], "refresh")],
)
def test_a_misspelt_command_gets_did_you_mean(project: Path, typed: list[str], meant: str) -> None:
    result = run(project, None, *typed)
    assert result.exit_code == 2
    assert f"Did you mean '{meant}'?" in result.output
    assert "Traceback" not in result.output


# --- customer: id or external id --------------------------------------------------------------

CUSTOMER_COMMANDS: dict[str, list[str]] = {
    "explain": ["explain", JOURNEY, "CUSTOMER", "--now", "2026-09-10"],
    "preview": ["preview", JOURNEY, "day3-care", "--customer", "CUSTOMER"],
    "resolve": ["resolve", JOURNEY, "CUSTOMER"],
}


def test_every_customer_command_is_covered() -> None:
    assert {path[0] for path in COMMANDS if "customer" in _params(path)} == set(CUSTOMER_COMMANDS)


def _with_customer(command: str, customer: str) -> list[str]:
    return [customer if a == "CUSTOMER" else a for a in CUSTOMER_COMMANDS[command]]


@pytest.mark.parametrize("command", sorted(CUSTOMER_COMMANDS))
def test_a_customer_by_id_or_external_id(project: Path, database: str, command: str) -> None:
    by_id = run(project, database, *_with_customer(command, "42"))
    by_external = run(project, database, *_with_customer(command, "CRM0000042"))
    assert by_id.exit_code == 0, by_id.output
    assert by_id.stdout == by_external.stdout
    assert "customer 42" in by_id.stdout


@pytest.mark.parametrize("command", sorted(CUSTOMER_COMMANDS))
@pytest.mark.parametrize("typed", ["999999", "CRM9999999", "王小明"])
def test_an_unknown_customer_is_named_as_typed(
    project: Path, database: str, command: str, typed: str
) -> None:
    line = one_line_error(run(project, database, *_with_customer(command, typed)))
    assert line == f"no customer with id or external id '{typed}'"


# --- --database -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DATABASE_COMMANDS), ids=" ".join)
def test_every_database_command_takes_database(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--database" in result.output
    assert "default: $SIYU_DATABASE_URL, else sqlite:///var/siyu.db" in result.output


# Each with arguments that succeed on the test database.
DATABASE_RUNS: dict[str, list[str]] = {
    "tick": ["tick", JOURNEY],
    "summary": ["summary", JOURNEY],
    "explain": ["explain", JOURNEY, "7"],
    "preview": ["preview", JOURNEY, "day3-care", "--customer", "CRM0000007"],
    "report": ["report", JOURNEY, "-o", "OUT/report.html"],
    "simulate": ["simulate", JOURNEY, "--start", "2026-09-01", "--days", "1", "--every", "1d"],
    "segments refresh": ["segments", "refresh", "--now", "2026-09-10"],
    "alerts follow-ups": ["alerts", "follow-ups"],
    "db upgrade": ["db", "upgrade"],
}


@pytest.mark.parametrize("name", sorted(DATABASE_RUNS))
def test_database_overrides_the_environment(
    project: Path, db: Any, unmigrated: str, flow: FlowRecorder, tmp_path: Path, name: str
) -> None:
    """SIYU_DATABASE_URL names a database without tables; --database names the real one."""
    args = [a.replace("OUT", str(tmp_path)) for a in DATABASE_RUNS[name]]
    result = run(project, unmigrated, *args, "--database", db(name))
    assert result.exit_code == 0, result.output
    assert os.environ.get("SIYU_DATABASE_URL") != db(name)  # not left behind
    if name == "preview":
        assert "customer 7" in result.stdout  # the real customer, not sample data


# Commands that need siyu's tables, with arguments that would otherwise succeed.
NEEDS_TABLES: dict[str, list[str]] = {
    "tick": ["tick", JOURNEY],
    "summary": ["summary", JOURNEY],
    "explain": ["explain", JOURNEY, "7"],
    "report": ["report", JOURNEY, "-o", "OUT/report.html"],
    "segments refresh": ["segments", "refresh"],
    "alerts follow-ups": ["alerts", "follow-ups"],
    "db seed": ["db", "seed", "--customers", "5"],
    "unsubscribe": ["unsubscribe", "TOKEN"],
}


@pytest.mark.parametrize("name", sorted(NEEDS_TABLES))
def test_an_unmigrated_database_says_run_db_upgrade(
    project: Path,
    unmigrated: str,
    flow: FlowRecorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    from siyu.unsubscribe import make_token

    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", "x" * 32)
    token = make_token(7, "sms")
    args = [a.replace("OUT", str(tmp_path)).replace("TOKEN", token) for a in NEEDS_TABLES[name]]
    line = one_line_error(run(project, unmigrated, *args))
    assert "run `siyu db upgrade`" in line
    assert not flow.calls


def test_a_missing_sqlite_file_is_not_created(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "siyu.db"
    line = one_line_error(run(project, f"sqlite:///{target}", "summary", JOURNEY))
    assert "no database at" in line or "run `siyu db upgrade`" in line
    assert not target.exists()


@pytest.mark.parametrize("url", ["", "nonsense", "mysql://x/y"])
def test_a_bad_database_url_is_one_line(project: Path, url: str) -> None:
    line = one_line_error(run(project, None, "summary", JOURNEY, "--database", url))
    assert "database" in line.lower() or "URL" in line


# --- times ------------------------------------------------------------------------------------

# Each command taking a time, with the option that takes it.
TIME_COMMANDS: dict[str, list[str]] = {
    "tick": ["tick", JOURNEY, "--now"],
    "explain": ["explain", JOURNEY, "42", "--now"],
    "segments refresh": ["segments", "refresh", "--now"],
    "simulate": ["simulate", JOURNEY, "--days", "1", "--every", "1d", "--start"],
    "db seed": ["db", "seed", "--customers", "5", "--arrivals", "1", "--now"],
}


def test_every_time_command_is_covered() -> None:
    with_time = {" ".join(p) for p in COMMANDS if {"now", "start"} & _params(p)}
    assert with_time == set(TIME_COMMANDS)


@pytest.mark.parametrize("name", sorted(TIME_COMMANDS))
@pytest.mark.parametrize("moment", ["2026-10-10", "2026-10-10T09:00", "2026-10-10T09:00+08:00"])
def test_a_time_with_or_without_zone(
    tmp_path: Path, project: Path, db: Any, flow: FlowRecorder, name: str, moment: str
) -> None:
    if name == "db seed":  # fills an empty database only
        with _fresh_database(tmp_path, "seed-time") as url:
            upgrade(url)
            result = run(project, url, *TIME_COMMANDS[name], moment)
        assert result.exit_code == 0, result.output
        # the demo brand's zone: its arrivals end two hours after the moment, read there
        until = "02:00" if moment == "2026-10-10" else "11:00"
        assert f"they arrive until {until} Asia/Shanghai" in result.stdout, result.stdout
        return
    result = run(project, db(name), *TIME_COMMANDS[name], moment)
    assert result.exit_code == 0, result.output
    if name == "tick":  # read in the journey's zone (Asia/Shanghai, +08:00)
        expected = (
            "2026-10-09T16:00:00+00:00" if moment == "2026-10-10" else ("2026-10-10T01:00:00+00:00")
        )
        assert flow.calls[-1]["now"] == expected


@pytest.mark.parametrize("name", sorted(TIME_COMMANDS))
@pytest.mark.parametrize("moment", ["tomorrow", "2026-13-01", "2026-10-10T25:00", "10/10/2026"])
def test_a_bad_time_is_one_line(
    project: Path, database: str, flow: FlowRecorder, name: str, moment: str
) -> None:
    line = one_line_error(run(project, database, *TIME_COMMANDS[name], moment))
    assert f"'{moment}' is not a date or time" in line
    assert not flow.calls


# --- files go under var/ ----------------------------------------------------------------------


def test_report_without_output_writes_under_var(
    project: Path, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(project, database, "report", JOURNEY)
    assert result.exit_code == 0, result.output
    written = project / "var" / f"{JOURNEY}-report.html"
    assert written.is_file() and str(written) in result.stdout
    assert not list(tmp_path.glob("*.html")) and not list(project.glob("*.html"))


# --- help pages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [(), *sorted({p[:1] for p in COMMANDS if len(p) > 1}), *COMMANDS],
    ids=lambda p: " ".join(p) or "siyu",
)
def test_help_has_no_artefacts(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage


# --- db seed ----------------------------------------------------------------------------------


def test_db_seed_prints_a_readable_summary(tmp_path: Path, project: Path) -> None:
    with _fresh_database(tmp_path, "seed") as url:
        upgrade(url)
        result = run(project, url, "db", "seed", "--customers", "20")
    assert result.exit_code == 0, result.output
    assert "Summary(" not in result.stdout and not re.search(r"\w=\d", result.stdout)
    # "customers  20" as a table row, or "20 customers" in a sentence
    assert re.search(r"\bcustomers\s+20\b|\b20 customers\b", result.stdout), result.stdout


# --- errors from issue 13: one line, never a traceback, never Prefect's ----------------------


def _siyu(project: Path, database: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "SIYU_PROJECT_DIR": str(project),
        "SIYU_DATABASE_URL": database,
        "PREFECT_HOME": str(project / ".prefect"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", "from siyu.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=project,
        timeout=120,
    )


def _clean_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert "prefect" not in (done.stderr + done.stdout).lower()  # the flow never started
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_tick_with_a_bad_now_is_one_line(project: Path, database: str) -> None:
    done = _siyu(project, database, "tick", JOURNEY, "--now", "2026-10-10T9am")
    assert "'2026-10-10T9am' is not a date or time" in _clean_failure(done)


def test_tick_on_an_unmigrated_database_is_one_line(project: Path, unmigrated: str) -> None:
    done = _siyu(project, unmigrated, "tick", JOURNEY)
    assert "run `siyu db upgrade`" in _clean_failure(done)


def test_tick_of_a_journey_that_does_not_validate_is_one_line(
    project: Path, database: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(project, broken, ignore=shutil.ignore_patterns("var", ".prefect"))
    path = broken / JOURNEY_FILE
    path.write_text(
        path.read_text(encoding="utf-8").replace("    at: 7d\n", "    at: 8d\n"),
        encoding="utf-8",
    )
    done = _siyu(broken, database, "tick", JOURNEY)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "prefect" not in (done.stderr + done.stdout).lower()
    assert "move `within` to at least 9d, or remove it" in done.stderr


def test_unsubscribe_for_a_deleted_customer_is_one_line(
    project: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s" * 32
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", secret)
    from siyu.unsubscribe import make_token

    engine = make_engine(database)
    with make_sessionmaker(engine)() as session, session.begin():
        session.add(Customer(id=8888888, name="x", created_at=datetime(2026, 9, 1, tzinfo=UTC)))
    token = make_token(8888888, "sms")  # a link sent while the customer existed
    with make_sessionmaker(engine)() as session, session.begin():
        session.execute(delete(Customer).where(Customer.id == 8888888))
    engine.dispose()
    done = _siyu(project, database, "unsubscribe", token, SIYU_UNSUBSCRIBE_SECRET=secret)
    assert "customer 8888888 is no longer in the database" in _clean_failure(done)


@pytest.mark.parametrize("name", sorted(TIME_COMMANDS))
def test_a_time_out_of_range_is_one_line(
    project: Path, database: str, flow: FlowRecorder, name: str
) -> None:
    line = one_line_error(run(project, database, *TIME_COMMANDS[name], "0001-01-01"))
    assert line.endswith("'0001-01-01' is out of range (years 1 to 9999)")


def test_a_simulation_past_the_calendar_is_one_line(project: Path, database: str) -> None:
    args = ["simulate", JOURNEY, "--start", "9999-12-30", "--days", "5"]
    assert "runs past the year 9999" in one_line_error(run(project, database, *args))


# --- files: only journey files are read, a file that cannot be written is one line ----------


@pytest.mark.parametrize("command", sorted(JOURNEY_COMMANDS))
@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/self/environ", "journeys"])
def test_only_journey_files_are_read(
    project: Path, database: str, flow: FlowRecorder, tmp_path: Path, command: str, path: str
) -> None:
    result = run(project, database, *_journey_args(project, tmp_path, command, path))
    line = one_line_error(result)
    assert "root:" not in result.output and "SIYU_" not in result.output
    assert f"'{path}'" in line


OUTPUTS: dict[str, list[str]] = {
    "graph": ["graph", JOURNEY, "-o", "MISSING/g.svg"],
    "report": ["report", JOURNEY, "-o", "MISSING/r.html"],
    "simulate": [
        "simulate",
        JOURNEY,
        "--start",
        "2026-09-01",
        "--days",
        "1",
        "--csv",
        "MISSING/s.csv",
    ],
    "simulate-html": [
        "simulate",
        JOURNEY,
        "--start",
        "2026-09-01",
        "--days",
        "1",
        "--html",
        "MISSING/s.html",
    ],
}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_an_output_that_cannot_be_written_is_one_line(
    project: Path, db: Any, tmp_path: Path, name: str
) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    args = [a.replace("MISSING", str(missing)) for a in OUTPUTS[name]]
    line = one_line_error(run(project, db(name), *args))
    assert line == f"No such file or directory: {missing}/{Path(args[-1]).name}"


def test_preview_never_creates_a_database(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "none" / "siyu.db"
    result = run(project, f"sqlite:///{target}", "preview", JOURNEY, "day3-care", "--customer", "7")
    assert result.exit_code == 0, result.output
    assert "sample data" in result.stdout
    assert not target.parent.exists()


@pytest.mark.parametrize("port", ["0", "65536", "99999", "http"])
def test_a_bad_sandbox_port_is_refused(project: Path, port: str) -> None:
    result = run(project, None, "sandbox", "--port", port)
    assert result.exit_code == 2 and "--port" in result.output
    assert "Traceback" not in result.output


@pytest.mark.filterwarnings("ignore:Logger 'prefect.flow_runs' attempted to send logs")
def test_prefect_logs_of_a_user_error_are_dropped_during_a_tick() -> None:
    """A user error raised inside the flow after the CLI's checks (the files changed in
    between) is shown once by the CLI: Prefect's traceback and its failed-state line that
    repeats it are dropped; any other error keeps its traceback."""
    import logging

    from siyu.cli.conventions import quiet_user_errors_in_prefect
    from siyu.errors import ConfigError
    from siyu.language.problems import SpecError

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("prefect.flow_runs")
    handler = Keep()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)

    def error(exc: BaseException, message: str) -> None:
        try:
            raise exc
        except BaseException:
            logger.error(message, exc_info=True)

    try:
        with quiet_user_errors_in_prefect():
            error(SpecError([]), "Encountered exception during execution")
            error(ConfigError("no journey"), "Encountered exception during execution")
            logger.info(
                "Finished in state Failed('Flow run encountered an exception: ConfigError: x')"
            )
            error(RuntimeError("a bug"), "a bug's traceback")
            logger.info("Finished in state Completed()")
        error(ConfigError("outside a tick"), "kept")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == ["a bug's traceback", "Finished in state Completed()", "kept"]


@pytest.mark.parametrize("name", ["summary", "db upgrade", "alerts follow-ups"])
def test_an_unreachable_database_is_one_line_without_its_password(project: Path, name: str) -> None:
    args = {"summary": ["summary", JOURNEY], "db upgrade": ["db", "upgrade"]}.get(
        name, name.split()
    )
    url = "postgresql+psycopg://siyu:hunter2secret@127.0.0.1:1/siyu"
    result = run(project, None, *args, "--database", url)
    line = one_line_error(result)
    assert "cannot use the database postgresql+psycopg://siyu:***@127.0.0.1:1/siyu" in line
    assert "hunter2secret" not in result.output


def test_a_forged_unsubscribe_token_is_one_line(
    project: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", "s" * 32)
    line = one_line_error(run(project, database, "unsubscribe", "7.sms.forged"))
    assert line == "unsubscribe token signature does not match"
