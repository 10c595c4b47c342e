"""Marketer SQL is a whitelist, runs read-only under a statement timeout, and never holds a
write lock: the journeys' own `where:`, `audience:` and `if: {customer:}`.

Validation refuses anything outside the whitelist with file:line:col; at run time (validation
bypassed: the spec is built directly) the database refuses writes, non-whitelisted functions
(SQLite's authoriser) and slow statements (the timeout), and the phase fails with one line
naming the journey's file and clause. Runs on SQLite, and on PostgreSQL when
SIYU_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.marketer_sql import MarketerSqlError
from siyu.engine.tick import run_tick, tick_phases
from siyu.language.loader import Catalog, check_journey_file
from siyu.language.problems import Problem, SpecError
from siyu.language.spec import JourneySpec
from siyu.language.where_clause import HARMLESS_FUNCTIONS, HARMLESS_NATIVE, dialect_of, to_dialect
from siyu.storage.engine import read_only_session, write_session
from siyu.storage.models import Customer, Event, Order
from tests.conftest import DAY0, Shop, local
from tests.recording_channel import recording_channels

CHANNELS = set(recording_channels())

# --- validate: the whitelist, with file:line:col ------------------------------------------

HOSTILE = {
    "nextval('customers_id_seq') > 0": "function 'nextval' is not allowed",
    "setval('deliveries_id_seq', 1) > 0": "function 'setval' is not allowed",
    "pg_sleep(5) IS NULL": "function 'pg_sleep' is not allowed",
    "randomblob(1000000000) IS NOT NULL": "function 'randomblob' is not allowed",
    "load_extension('/tmp/x.so') = 1": "function 'load_extension' is not allowed",
    "frobnicate(city) = 1": "function 'frobnicate' is not allowed",
    "city = :x": "bind markers",
    "city = ?": "bind markers",
    "city = %s": "bind markers",
    "city = $1": "bind markers",
    "[city] = '上海'": "not in [brackets]",
    "city IN (SELECT name FROM customers)": "sub-queries and statements are not allowed",
    "city = '上海'; DELETE FROM customers": "not several statements",
}

# Each place a marketer writes SQL, with the columns the examples above use (`city` is a
# customer column; order_paid has `store`, which we rename the example's column to).
PLACES = {
    "entry.where": "entry:\n  event: customer_created\n  where: {sql}\n",
    "entry.audience": "entry:\n  calendar: '0 10 * * *'\n  audience: {sql}\n",
    "exit_when.where": (
        "entry: {{event: order_paid}}\nexit_when:\n  event: customer_created\n  where: {sql}\n"
    ),
    "goal.where": (
        "entry: {{event: order_paid}}\ngoal:\n  event: customer_created\n  within: 7d\n"
        "  where: {sql}\n"
    ),
}
STEPS = "steps:\n  - {id: hi, send: sms, template: hi.j2}\n"
IF_CUSTOMER = (
    "entry: {{event: order_paid}}\nsteps:\n  - id: hi\n    send: sms\n    template: hi.j2\n"
    "    if:\n      customer: {sql}\n"
)


def _check(tmp_path: Path, text_: str, dialect: str = "sqlite") -> list[Problem]:
    (tmp_path / "hi.j2").write_text("您好", encoding="utf-8")
    path = tmp_path / "hostile.yaml"
    path.write_text("journey: hostile\nquiet_hours: null\n" + text_, encoding="utf-8")
    _spec, problems = check_journey_file(path, Catalog(CHANNELS, tmp_path, (), dialect))
    return problems


def _position_of(value: str, body: str) -> tuple[int, int]:
    """(line, column) of `value` in the file `_check` writes (two header lines first)."""
    for number, line in enumerate(body.splitlines(), start=3):
        if value in line:
            return number, line.index(value) + 1
    raise AssertionError(f"{value} not in {body}")


def _quoted(sql: str) -> str:
    return '"' + sql.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize("sql", list(HOSTILE))
@pytest.mark.parametrize("place", [*PLACES, "if.customer"])
def test_sql_outside_the_whitelist_is_refused_with_its_position(
    tmp_path: Path, place: str, sql: str, dialect: str
) -> None:
    if place == "if.customer":
        body = IF_CUSTOMER.format(sql=_quoted(sql))
    else:
        template = PLACES[place]
        body = template.format(sql=_quoted(sql)) + ("" if "steps" in template else STEPS)
    line, col = _position_of(_quoted(sql), body)
    problems = _check(tmp_path, body, dialect)
    assert problems, f"{place}: {sql!r} passed validation"
    assert any(HOSTILE[sql] in p.message for p in problems), problems
    problem = next(p for p in problems if HOSTILE[sql] in p.message)
    assert problem.file.endswith("hostile.yaml")
    assert (problem.line, problem.column) == (line, col), problem
    assert "\n" not in problem.message


def test_a_misspelt_function_gets_a_did_you_mean(tmp_path: Path) -> None:
    problems = _check(tmp_path, PLACES["entry.audience"].format(sql="\"lowr(city) = 'a'\"") + STEPS)
    assert len(problems) == 1 and "did you mean 'lower'" in problems[0].message, problems


@pytest.mark.parametrize(
    ("sql", "ok_on", "missing_on"),
    [
        ("month(birthday) = 11", "postgresql", "sqlite"),
        ("strftime('%m', birthday) = '11'", "sqlite", "postgresql"),
    ],
)
def test_a_function_missing_on_the_database_in_use_is_refused(
    tmp_path: Path, sql: str, ok_on: str, missing_on: str
) -> None:
    body = PLACES["entry.audience"].format(sql=_quoted(sql)) + STEPS
    assert _check(tmp_path, body, ok_on) == []
    problems = _check(tmp_path, body, missing_on)
    assert len(problems) == 1 and "does not exist on" in problems[0].message, problems


def test_validation_follows_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = PLACES["entry.audience"].format(sql='"month(birthday) = 11"') + STEPS
    (tmp_path / "hi.j2").write_text("您好", encoding="utf-8")
    path = tmp_path / "hostile.yaml"
    path.write_text("journey: hostile\nquiet_hours: null\n" + body, encoding="utf-8")
    monkeypatch.setenv("SIYU_DATABASE_URL", "sqlite:///var/x.db")
    _spec, problems = check_journey_file(path, Catalog(CHANNELS, tmp_path, ()))
    assert problems and "does not exist on SQLite" in problems[0].message
    monkeypatch.setenv("SIYU_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/x")
    _spec, problems = check_journey_file(path, Catalog(CHANNELS, tmp_path, ()))
    assert problems == []


# A sample use of every whitelisted function, over customer columns.
SAMPLES = {
    "->>": "properties->>'text' = '好的'",  # over the events table
    "lower": "lower(city) = '上海'",
    "upper": "upper(city) = '上海'",
    "length": "length(city) >= 0",
    "coalesce": "coalesce(city, '') = '上海'",
    "abs": "abs(id) >= 0",
    "round": "round(id) >= 0",
    "trim": "trim(city) = '上海'",
    "substr": "substr(city, 1, 1) = '上'",
    "replace": "replace(city, '上', 'x') = 'x海'",
    "nullif": "nullif(city, '') IS NOT NULL",
    "instr": "instr(city, '海') > 0",
    "date": "date(birthday) IS NULL OR date(birthday) > '1900-01-01'",
    "current_date": "birthday IS NULL OR birthday < current_date",
    "month": "month(birthday) IS NULL OR month(birthday) > 0",
    "year": "year(birthday) IS NULL OR year(birthday) > 1900",
    "day": "day(birthday) IS NULL OR day(birthday) > 0",
    "extract": "EXTRACT(MONTH FROM birthday) IS NULL OR EXTRACT(MONTH FROM birthday) > 0",
    "strftime": "strftime('%m', birthday) IS NULL OR strftime('%m', birthday) > '00'",
    "julianday": "julianday(birthday) IS NULL OR julianday(birthday) > 0",
    "date_part": "date_part('month', birthday) IS NULL OR date_part('month', birthday) > 0",
}


def _dialect(sessions: sessionmaker[Session]) -> str:
    return dialect_of(sessions.kw["bind"].dialect.name)


def test_every_whitelisted_function_runs_read_only_on_the_database_in_use(
    sessions: sessionmaker[Session], shop: Shop
) -> None:
    dialect = _dialect(sessions)
    allowed = [*HARMLESS_FUNCTIONS[dialect], *HARMLESS_NATIVE[dialect]]
    assert set(allowed) <= set(SAMPLES)
    with sessions() as session, session.begin():
        customer = Customer(name="王", city="上海", timezone="Asia/Shanghai", created_at=DAY0)
        session.add(customer)
        session.flush()
        session.add(
            Event(customer_id=customer.id, name="sms_reply", occurred_at=DAY0,
                  properties={"text": "好的"})
        )  # fmt: skip
    for name in allowed:
        condition = text(to_dialect(SAMPLES[name], dialect, DAY0.date()))
        table = Event if name == "->>" else Customer
        with read_only_session(sessions) as session:
            found = session.scalars(select(table.id).where(condition)).all()
        assert len(found) == 1, name


# --- run time: validation bypassed ----------------------------------------------------------


def _project(tmp_path: Path, journey: str = "hostile") -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "hi.j2").write_text("您好", encoding="utf-8")
    (tmp_path / "journeys").mkdir(exist_ok=True)
    (tmp_path / "journeys" / f"{journey}.yaml").write_text(
        f"journey: {journey}\n# the file the message must name\n", encoding="utf-8"
    )
    return tmp_path / "templates"


def _spec(journey: str = "hostile", **entry: Any) -> JourneySpec:
    """A spec built directly, as a stored older version would be: no validation of its SQL."""
    return JourneySpec.model_validate(
        {
            "journey": journey,
            "quiet_hours": None,
            "entry": entry or {"event": "order_paid"},
            "steps": [{"id": "hi", "send": "sms", "template": "hi.j2"}],
        }
    )


def _ctx(sessions: sessionmaker[Session], templates: Path) -> EngineContext:
    return EngineContext(sessions, templates, dict(recording_channels()))  # type: ignore[arg-type]


def _enroll(ctx: EngineContext, spec: JourneySpec) -> Any:
    """The enroll phase at day 1, the journey having been switched on at day 0 (by a harmless
    version of the same file), so that there are events and calendar firings to look at."""
    harmless = _spec(spec.journey)
    enroll = next(p for p in tick_phases(spec) if p.name == "enroll")
    enroll.run(ctx, harmless, local(0))
    return enroll.run(ctx, spec, local(1))


def _write_succeeds(sessions: sessionmaker[Session]) -> None:
    """Another session writes right away: nothing is left holding a lock."""
    started = time.monotonic()
    with write_session(sessions) as session:
        if _dialect(sessions) == "postgresql":
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
        session.execute(text("UPDATE customers SET city = city"))
        session.add(Customer(name="后来者", timezone="Asia/Shanghai", created_at=DAY0))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("entry", "clause"),
    [
        ({"event": "order_paid", "where": "{sql} IS NOT NULL"}, "entry.where"),
        ({"calendar": "0 10 * * *", "audience": "{sql} IS NOT NULL"}, "entry.audience"),
    ],
)
def test_a_write_through_a_function_fails_the_phase_read_only(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path, entry: dict[str, str], clause: str
) -> None:
    dialect = _dialect(sessions)
    buyer = shop.customer()
    shop.order(buyer, local(0, 10), seq=1)
    # PostgreSQL: nextval writes (a sequence); SQLite has no writing function, and its
    # authoriser refuses every function off the list before it runs.
    sql = "nextval('customers_id_seq')" if dialect == "postgresql" else "randomblob(1000000000)"
    spec = _spec(**{k: v.format(sql=sql) for k, v in entry.items()})
    if dialect == "postgresql":
        with sessions() as session:
            before = session.scalar(text("SELECT last_value FROM customers_id_seq"))
    with pytest.raises(MarketerSqlError) as caught:
        _enroll(_ctx(sessions, _project(tmp_path)), spec)
    message = str(caught.value)
    assert message.startswith(f"journeys/hostile.yaml: {clause} (journey 'hostile')"), message
    expected = "tried to write" if dialect == "postgresql" else "function that is not allowed"
    assert expected in message and "\n" not in message
    if dialect == "postgresql":
        with sessions() as session:
            assert session.scalar(text("SELECT last_value FROM customers_id_seq")) == before
    _write_succeeds(sessions)


def test_a_function_missing_on_the_database_fails_the_phase_in_one_line(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    shop.customer()
    missing = {"sqlite": "month(birthday) = 11", "postgresql": "strftime('%m', birthday) = '11'"}
    spec = _spec(calendar="0 10 * * *", audience=missing[_dialect(sessions)])
    with pytest.raises(MarketerSqlError) as caught:
        _enroll(_ctx(sessions, _project(tmp_path)), spec)
    assert str(caught.value) == (
        "journeys/hostile.yaml: entry.audience (journey 'hostile') calls a function that is not "
        "allowed or does not exist on this database; run `siyu validate` to see which"
    )
    _write_succeeds(sessions)


def test_setval_in_one_journey_cannot_break_another(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    if _dialect(sessions) != "postgresql":
        pytest.skip("sequences are PostgreSQL's")
    buyer = shop.customer()
    shop.order(buyer, local(0, 10), seq=1)
    evil = _spec(event="order_paid", where="setval('deliveries_id_seq', 1) > 0")
    ctx = _ctx(sessions, _project(tmp_path))
    with pytest.raises(MarketerSqlError, match="tried to write"):
        _enroll(ctx, evil)
    with sessions() as session:  # never called, or rolled back: the sequence is untouched
        assert session.scalar(text("SELECT is_called FROM deliveries_id_seq")) is False


def test_the_raw_session_refuses_writes_and_unlisted_functions(
    sessions: sessionmaker[Session],
) -> None:
    statements = ["DELETE FROM customers", "INSERT INTO customers (name) VALUES ('x')"]
    if _dialect(sessions) == "postgresql":
        statements += ["SELECT nextval('customers_id_seq')", "SELECT setval('customers_id_seq', 5)"]
    else:
        statements += [
            "SELECT randomblob(10)",
            "SELECT load_extension('x')",
            "ATTACH ':memory:' AS x",
        ]
    for statement in statements:
        with pytest.raises(DBAPIError), read_only_session(sessions) as session:
            session.execute(text(statement))
    _write_succeeds(sessions)


def _many_orders(sessions: sessionmaker[Session], customer_id: int, count: int) -> None:
    rows = [
        {
            "order_no": f"N{i:09d}",
            "customer_id": customer_id,
            "paid_at": local(0, 10),
            "amount": Decimal("1.00"),
            "category": "护肤",
            "order_seq": i + 1,
            "store": f"store-{i}",
        }
        for i in range(count)
    ]
    with sessions() as session, session.begin():
        session.execute(insert(Order), rows)


def _slow_where(sessions: sessionmaker[Session], shop: Shop) -> tuple[str, str]:
    """A condition that runs longer than the timeout returned with it, and one buyer."""
    buyer = shop.customer()
    if _dialect(sessions) == "postgresql":
        shop.order(buyer, local(0, 10), seq=1)
        return "length(cast(pg_sleep(30) AS text)) IS NULL", "0.5"
    # SQLite: no sleeping function passes the authoriser; a scan long enough will do
    _many_orders(sessions, buyer, 150_000)
    return " OR ".join(f"lower(store) LIKE '%zz{i}%'" for i in range(8)), "0.01"


def test_a_slow_condition_is_cancelled_and_holds_no_lock(
    sessions: sessionmaker[Session],
    shop: Shop,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where, timeout = _slow_where(sessions, shop)
    ctx = _ctx(sessions, _project(tmp_path))
    enroll = next(p for p in tick_phases(_spec()) if p.name == "enroll")
    enroll.run(ctx, _spec(), local(0))  # switched on before the orders
    monkeypatch.setenv("SIYU_MARKETER_SQL_TIMEOUT", timeout)
    started = time.monotonic()
    with pytest.raises(MarketerSqlError) as caught:
        spec = _spec(event="order_paid", where=where)
        enroll.run(ctx, spec, local(1))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message == (
        f"journeys/hostile.yaml: entry.where (journey 'hostile') was cancelled after "
        f"{float(timeout):g} s (SIYU_MARKETER_SQL_TIMEOUT); make the condition cheaper or "
        "raise the limit"
    )
    _write_succeeds(sessions)
    if _dialect(sessions) == "postgresql":  # the server is not still running it
        with sessions() as session:
            running = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                    "AND pid <> pg_backend_pid()"
                )
            )
        assert running == 0


def test_a_cancelled_journey_leaves_the_next_journeys_tick_working(
    sessions: sessionmaker[Session],
    shop: Shop,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where, timeout = _slow_where(sessions, shop)
    templates = _project(tmp_path)
    _project(tmp_path, "calm")
    ctx = _ctx(sessions, templates)
    slow, calm = _spec(event="order_paid", where=where), _spec("calm", event="order_paid")
    run_tick(ctx, _spec(), local(0))
    run_tick(ctx, calm, local(0))
    monkeypatch.setenv("SIYU_MARKETER_SQL_TIMEOUT", timeout)
    with pytest.raises(MarketerSqlError, match="journeys/hostile.yaml: entry.where"):
        run_tick(ctx, slow, local(1, 11))
    monkeypatch.delenv("SIYU_MARKETER_SQL_TIMEOUT")
    counts = run_tick(ctx, calm, local(1, 11))
    assert counts["enroll"]["enrolled"] == 1 and counts["hi"]["sent"] == 1, counts


def test_the_timeout_setting_is_checked(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    from siyu.errors import ConfigError

    monkeypatch.setenv("SIYU_MARKETER_SQL_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="SIYU_MARKETER_SQL_TIMEOUT"):
        with read_only_session(sessions):
            pass


# --- no write lock while marketer SQL runs --------------------------------------------------

MARKER = "'marker-7f3a'"


@contextmanager
def _watch(engine: Engine, found: list[str]) -> Iterator[None]:
    """While a statement carrying MARKER runs, check it holds no write lock (SQLite: another
    connection can take the write lock at once) and is read-only (PostgreSQL)."""

    def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if MARKER not in statement:
            return
        if engine.dialect.name == "sqlite":
            other = sqlite3.connect(engine.url.database or "", timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                found.append("unlocked")
            except sqlite3.OperationalError as error:
                found.append(f"locked: {error}")
            finally:
                other.close()
        else:
            read_only = conn.exec_driver_sql("SHOW transaction_read_only").scalar()
            timeout = conn.exec_driver_sql("SHOW statement_timeout").scalar()
            found.append("unlocked" if read_only == "on" and timeout != "0" else "writable")

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.mark.parametrize(
    "fields",
    [
        {"entry": {"event": "order_paid", "where": f"store <> {MARKER}"}},
        {"entry": {"calendar": "0 10 * * *", "audience": f"city <> {MARKER}"}},
        {"exit_when": {"event": "order_paid", "where": f"store <> {MARKER} AND order_seq > 1"}},
        {"goal": {"event": "order_paid", "where": f"store <> {MARKER}", "within": "7d"}},
        {"if": {"customer": f"city <> {MARKER}"}},
    ],
    ids=["entry", "audience", "exit_when", "goal", "if-customer"],
)
def test_marketer_sql_runs_outside_any_write_transaction(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path, fields: dict[str, Any]
) -> None:
    data: dict[str, Any] = {
        "journey": "hostile",
        "quiet_hours": None,
        "entry": {"event": "order_paid"},
        "steps": [{"id": "hi", "send": "sms", "template": "hi.j2"}],
    }
    if "if" in fields:
        data["steps"][0]["if"] = fields["if"]
    else:
        data.update(fields)
    spec = JourneySpec.model_validate(data)
    buyer = shop.customer()
    shop.order(buyer, local(0, 10), seq=1)
    shop.order(buyer, local(0, 11), seq=2)
    found: list[str] = []
    ctx = _ctx(sessions, _project(tmp_path))
    run_tick(ctx, spec, local(0, 9))  # the first tick activates the journey
    shop.order(buyer, local(0, 12), seq=3)
    with sessions() as session, session.begin():
        session.execute(text("UPDATE customers SET city = '上海'"))
    with _watch(sessions.kw["bind"], found):
        run_tick(ctx, spec, local(1, 10))
    assert found and set(found) == {"unlocked"}, found


def test_a_long_marketer_query_does_not_block_another_journeys_writes(
    sessions: sessionmaker[Session], shop: Shop
) -> None:
    """SQLite: a reader never holds the single writer's lock (WAL), so a long condition of one
    journey leaves the others' ticks writing."""
    if _dialect(sessions) != "sqlite":
        pytest.skip("SQLite's single writer lock")
    for _ in range(120):
        shop.customer(identities=())
    slow = "SELECT count(*) FROM customers a, customers b, customers c, customers d, customers e"
    state: dict[str, Any] = {}

    def reader() -> None:
        try:
            with read_only_session(sessions, timeout=3) as session:
                state["started"] = time.monotonic()
                session.execute(text(slow)).scalar()
        except DBAPIError as error:
            state["error"] = error
        finally:
            state["ended"] = time.monotonic()

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.3)
    _write_succeeds(sessions)
    written = time.monotonic()
    thread.join()
    assert "started" in state and thread.is_alive() is False
    # An order, not a duration (a loaded machine may be slow): the write was done while the
    # reader still ran; had it waited for the reader's lock, it would end after the reader.
    assert state["started"] < written < state["ended"], "the write waited for the reader"
    assert "interrupted" in str(state.get("error", "")), "the slow read was not cancelled"


# --- item 9: overflowing durations and versions --------------------------------------------


@pytest.mark.parametrize(
    ("fragment", "value", "expected"),
    [
        (
            "version: 99999999999999999999\nentry: {event: order_paid}\n" + STEPS,
            "99999999999999999999",
            "less than or equal to 2147483647",
        ),
        (
            "entry: {event: order_paid}\nsteps:\n  - {id: hi, at: 99999999d, send: sms, "
            "template: hi.j2}\n",
            "99999999d",
            "longest duration allowed",
        ),
        (
            "entry: {event: order_paid, lookback: 99999999999999999999999999w}\n" + STEPS,
            "99999999999999999999999999w",
            "longest duration allowed",
        ),
        (
            "entry: {event: order_paid}\ngoal: {event: order_paid, within: 3660d1s}\n" + STEPS,
            "3660d1s",
            "longest duration allowed",
        ),
    ],
    ids=["version", "at", "lookback", "goal-within"],
)
def test_overflowing_durations_and_versions_are_refused_with_position(
    tmp_path: Path, fragment: str, value: str, expected: str
) -> None:
    problems = _check(tmp_path, fragment)
    assert len(problems) == 1, problems
    assert (problems[0].line, problems[0].column) == _position_of(value, fragment), problems[0]
    assert expected in problems[0].message, problems[0]


def test_the_longest_allowed_duration_still_ticks(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    spec = JourneySpec.model_validate(
        {
            "journey": "hostile",
            "version": 2_147_483_647,
            "quiet_hours": None,
            "entry": {"event": "order_paid", "lookback": "3660d"},
            "steps": [{"id": "hi", "at": "3650d", "within": "3660d", "send": "sms",
                       "template": "hi.j2"}],
        }
    )  # fmt: skip
    buyer = shop.customer()
    shop.order(buyer, local(0, 10), seq=1)
    ctx = _ctx(sessions, _project(tmp_path))
    counts = run_tick(ctx, spec, local(1))
    assert counts["enroll"]["enrolled"] == 1
    run_tick(ctx, spec, local(1) + timedelta(days=10))


def test_preview_runs_the_entry_condition_read_only(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    from siyu.preview.render_preview import preview_customer

    buyer = shop.customer()
    shop.order(buyer, local(0, 10), seq=1)
    dialect = _dialect(sessions)
    sql = "nextval('customers_id_seq')" if dialect == "postgresql" else "randomblob(1000000000)"
    spec = _spec(event="order_paid", where=f"{sql} IS NOT NULL")
    templates = _project(tmp_path)
    with sessions() as session, pytest.raises(MarketerSqlError, match="entry.where"):
        preview_customer(session, spec, spec.steps[0], templates, str(buyer))
    _write_succeeds(sessions)


def test_a_refused_or_cancelled_journey_sql_is_not_retried_but_a_lost_connection_is() -> None:
    """The phase task's retry condition (flows/journey_flow.py): a user's error fails the run
    at once with its one line, instead of costing three statement timeouts per tick."""
    from prefect.states import Failed
    from sqlalchemy.exc import OperationalError

    from tasks.phases import transient

    refused = MarketerSqlError("journeys/x.yaml: entry.where was cancelled after 30 s")
    assert not transient(None, None, Failed(data=refused))
    assert not transient(None, None, Failed(data=SpecError([])))
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert transient(None, None, Failed(data=lost))
    assert transient(None, None, Failed(data=TimeoutError()))
