"""Shared fixtures: a fresh SQLite database per test, helpers to create customers and orders,
and an engine context wired to recording channels."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.language.loader import Catalog, load_journey
from siyu.language.spec import JourneySpec
from siyu.sandbox.server import RunningSandbox, start_sandbox
from siyu.settings import settings
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import Base, ChannelIdentity, Consent, Customer, Order
from tests.prefect_test_server import RUN_DIRECTORY, shared_prefect_api, stop_shared_server
from tests.recording_channel import RecordingChannel, recording_channels

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = timedelta(hours=8)
# Day 0 of every time-travel test: Monday 2026-11-02, midnight Asia/Shanghai, in UTC.
DAY0 = datetime(2026, 11, 2, tzinfo=UTC) - SHANGHAI

# The suite's SQLite databases are throwaway: no disk flush per commit (db/engine.py,
# sqlite_synchronous; it halved the time-travel tests' wall time). Set before any engine
# exists; the CLI subprocesses inherit it. The production-path tests start their processes
# from a clean environment, so they run with the default, FULL.
os.environ.setdefault("SIYU_SQLITE_SYNCHRONOUS", "OFF")


def local(day: float, hour: float = 0) -> datetime:
    """A moment `day` days and `hour` hours after DAY0 (Shanghai wall clock), as UTC."""
    return DAY0 + timedelta(days=day, hours=hour)


@contextmanager
def fresh_database_url(directory: Path, name: str = "test") -> Iterator[str]:
    """An empty database: a SQLite file `name`.db in `directory`, or, when
    SIYU_TEST_POSTGRES_URL is set (`.ci/run` starts a server), a fresh schema on that
    PostgreSQL server (dropped afterwards)."""
    server = os.environ.get("SIYU_TEST_POSTGRES_URL")
    if not server:
        yield f"sqlite:///{directory / f'{name}.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{server}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


class _SettingsMonkeyPatch(pytest.MonkeyPatch):
    """siyu.settings.settings() reads the environment once: a test that sets or removes a
    variable sees it at once, and the next test sees the environment it restored."""

    def setenv(self, name: str, value: str, prepend: str | None = None) -> None:
        super().setenv(name, value, prepend)
        settings.cache_clear()

    def delenv(self, name: str, raising: bool = True) -> None:
        super().delenv(name, raising)
        settings.cache_clear()

    def undo(self) -> None:
        super().undo()
        settings.cache_clear()


@pytest.fixture
def monkeypatch() -> Iterator[pytest.MonkeyPatch]:
    patch = _SettingsMonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(autouse=True)
def _settings_of_this_test() -> Iterator[None]:
    """Each test starts from the settings of its environment, whatever the last one changed
    (CliRunner's env=, a command's --database)."""
    settings.cache_clear()
    yield
    settings.cache_clear()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database for one test (see fresh_database_url)."""
    with fresh_database_url(tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding the models' empty tables, made once per worker: copying it
    costs well under a millisecond, creating the tables ~20 ms of CPU (some 600 tests)."""
    path = tmp_path_factory.mktemp("schema-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()  # the last connection's close checkpoints and removes the WAL file
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture
def sessions(database_url: str, sqlite_schema_template: Path) -> Iterator[sessionmaker[Session]]:
    """The models' tables in the test's database: on SQLite a copy of the worker's template
    (when the file does not exist yet), else `create_all`."""
    file = Path(database_url.removeprefix("sqlite:///"))
    copied = database_url.startswith("sqlite:///") and not file.exists()
    if copied:
        file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sqlite_schema_template, file)
    engine = make_engine(database_url)
    if not copied:
        Base.metadata.create_all(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def channels() -> dict[str, RecordingChannel]:
    return recording_channels()


@pytest.fixture
def ctx(sessions: sessionmaker[Session], channels: dict[str, RecordingChannel]) -> EngineContext:
    return EngineContext(sessions, ROOT / "templates", dict(channels))  # type: ignore[arg-type]


def canonical_journey(channels: dict[str, RecordingChannel]) -> JourneySpec:
    return load_journey(
        ROOT / "journeys" / "first_purchase.yaml", Catalog(set(channels), ROOT / "templates")
    )


_ids = count(1)


class Shop:
    """Writes the brand's data the way a CRM sync would."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def customer(
        self,
        name: str = "王小明",
        *,
        consent: bool | None = True,
        identities: tuple[str, ...] = ("mobile", "wecom_external_userid", "wechat_openid"),
        timezone: str = "Asia/Shanghai",
    ) -> int:
        with self.sessions() as session, session.begin():
            customer = Customer(name=name, timezone=timezone, created_at=DAY0 - timedelta(days=30))
            session.add(customer)
            session.flush()
            n = next(_ids)
            values = {
                "mobile": f"1380000{n:04d}",
                "wecom_external_userid": f"wm{n:030d}",
                "wechat_openid": f"o{n:027d}",
                "email": f"c{n}@example.com",
                "miniprogram_openid": f"om{n:026d}",
            }
            for kind in identities:
                session.add(ChannelIdentity(customer_id=customer.id, kind=kind, value=values[kind]))
            if consent is not None:
                session.add(
                    Consent(
                        customer_id=customer.id,
                        purpose="marketing",
                        granted=consent,
                        updated_at=DAY0 - timedelta(days=30),
                    )
                )
            return customer.id

    def order(self, customer_id: int, at: datetime, *, seq: int, category: str = "护肤") -> None:
        with self.sessions() as session, session.begin():
            session.add(
                Order(
                    order_no=f"T{next(_ids):08d}",
                    customer_id=customer_id,
                    paid_at=at,
                    amount=Decimal("199.00"),
                    category=category,
                    order_seq=seq,
                    store="小程序商城",
                )
            )


@pytest.fixture
def shop(sessions: sessionmaker[Session]) -> Shop:
    return Shop(sessions)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or the only process)
        os.environ[RUN_DIRECTORY] = tempfile.mkdtemp(prefix="siyu-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and RUN_DIRECTORY in os.environ:
        directory = Path(os.environ.pop(RUN_DIRECTORY))
        stop_shared_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test API for the whole run, shared by the xdist workers
    (tests/prefect_test_server.py: it costs ~11 s of CPU to start)."""
    # a loaded 2-core machine running tests in parallel can need long to start it
    with shared_prefect_api(Path(os.environ[RUN_DIRECTORY]), startup_timeout=120):
        yield


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox() as running:
        yield running


@pytest.fixture
def project_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The flow reads its database and project from the environment, as on a worker."""
    monkeypatch.setenv("SIYU_DATABASE_URL", database_url)
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(ROOT))
    return database_url
