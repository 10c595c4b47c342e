"""Hostile input: templates reaching Python internals, journey SQL that tries to write, and
personal data or secrets in logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.render import render_message
from siyu.language.loader import Catalog, load_journey
from siyu.language.problems import SpecError
from siyu.storage.engine import read_only_session
from tests.recording_channel import recording_channels

CUSTOMER = {"id": 1, "name": "王小明", "city": "上海"}


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__['os'] }}",
        "{{ customer.__class__ }}",
        "{{ customer.items.__self__ }}",
        "{{ customer.pop('name') }}",  # the immutable sandbox: no mutating calls
        "{{ customer.update(name='x') }}",
        "{{ range(10**9)|list|length }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_templates_that_reach_for_internals_are_refused(tmp_path: Path, template: str) -> None:
    (tmp_path / "t.j2").write_text(template + "您好", encoding="utf-8")
    rendered = render_message(tmp_path, "t.j2", {"customer": dict(CUSTOMER)})
    assert rendered.body is None and rendered.error


def journey_with(tmp_path: Path, fragment: str) -> str:
    (tmp_path / "hi.j2").write_text("{{ customer.name }}您好", encoding="utf-8")
    path = tmp_path / "j.yaml"
    path.write_text("journey: hostile\nquiet_hours: null\n" + fragment, encoding="utf-8")
    return str(path)


STEP = "steps:\n  - {id: hi, send: sms, template: hi.j2}\n"
ENTRY = "entry: {event: order_paid, where: order_seq = 1}\n"
WRITES = [
    "1 = 1; DROP TABLE customers",
    "order_seq = 1; UPDATE customers SET name = 'x'",
    "order_seq IN (SELECT 1 FROM customers)",
    "1 = 1; DELETE FROM deliveries",
]


@pytest.mark.parametrize("sql", WRITES)
@pytest.mark.parametrize(
    "place",
    [
        lambda sql: f'entry: {{event: order_paid, where: "{sql}"}}\n' + STEP,
        lambda sql: ENTRY + f'exit_when: {{event: order_paid, where: "{sql}"}}\n' + STEP,
        lambda sql: ENTRY + f'goal: {{event: order_paid, where: "{sql}", within: 7d}}\n' + STEP,
        lambda sql: f"entry: {{calendar: '0 10 * * *', audience: \"{sql}\"}}\n" + STEP,
        lambda sql: (
            ENTRY
            + f'steps:\n  - {{id: hi, send: sms, template: hi.j2, if: {{customer: "{sql}"}}}}\n'
        ),
    ],
    ids=["entry", "exit_when", "goal", "calendar-audience", "if-customer"],
)
def test_journey_sql_that_writes_is_refused_before_it_runs(
    tmp_path: Path, sql: str, place: object
) -> None:
    path = journey_with(tmp_path, place(sql))  # type: ignore[operator]
    with pytest.raises(SpecError):
        load_journey(Path(path), Catalog(set(recording_channels()), tmp_path))


def test_the_journeys_own_queries_run_in_a_read_only_transaction(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(DBAPIError), read_only_session(sessions) as session:
        session.execute(text("DELETE FROM customers"))
    with sessions() as session, session.begin():  # the pooled connection can write again
        session.execute(text("DELETE FROM customers"))


def test_a_tick_logs_no_personal_data_and_no_secrets(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, database_url: str
) -> None:
    from bench.scenario import write_project
    from siyu.channels.secrets import SANDBOX_DEV_SECRETS
    from siyu.engine.tick import run_tick
    from siyu.sandbox.server import start_sandbox
    from siyu.storage.engine import make_engine, make_sessionmaker
    from siyu.storage.models import Base
    from tests.conftest import Shop, local

    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    shop = Shop(sessions)
    spec = write_project(tmp_path, "logs", "sms")
    from bench.scenario import engine_context

    caplog.set_level(logging.DEBUG)
    with start_sandbox() as sandbox:
        ctx = engine_context(sessions, tmp_path, sandbox.url)
        run_tick(ctx, spec, local(0))
        buyer = shop.customer("欧阳娜娜")
        shop.order(buyer, local(0, 10), seq=1)
        counts = run_tick(ctx, spec, local(1, 11))
        for channel in ctx.channels.values():
            channel.close()
    engine.dispose()
    assert counts["hello"]["sent"] == 1
    logged = caplog.text
    assert "欧阳娜娜" not in logged and "1380000" not in logged
    for secret in SANDBOX_DEV_SECRETS.values():
        assert secret not in logged
