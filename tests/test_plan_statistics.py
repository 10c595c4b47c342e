"""Planner statistics that a bulk load left stale, on PostgreSQL: statistics taken while the
tables were empty, and autovacuum switched off so that no autoanalyze can come to the rescue.
The tick analyses what its own counters say is stale before it plans, so completion's ledger
lookups go through the ledger's index, not a scan of the ledger per enrollment (a measured
tick's completion took 345 s instead of 6 s until autoanalyze ran: siyu/storage/statistics.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.tick import tick_phases
from siyu.engine.versions import ensure_journey
from siyu.storage.models import Customer, Delivery, DeliveryStatus, Enrollment
from siyu.storage.statistics import TICK_TABLES, refresh_stale_statistics
from tests.conftest import canonical_journey, local

CUSTOMERS = 3000


def _modified_since_analysis(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT relname, n_mod_since_analyze FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema()"
            )
        )
        return {name: int(count) for name, count in rows}


def test_a_tick_analyses_the_tables_a_bulk_load_left_stale(
    database_url: str, sessions: sessionmaker[Session], ctx: EngineContext
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("planner statistics are PostgreSQL's (SQLite keeps none unless asked)")
    engine = ctx.sessions.kw["bind"]
    with engine.begin() as connection:
        for table in TICK_TABLES:
            connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in TICK_TABLES:
            connection.execute(text(f"ANALYZE {table}"))  # while empty
    spec = canonical_journey(ctx.channels)  # type: ignore[arg-type]
    now = local(20)
    with sessions.begin() as session:
        journey_id = ensure_journey(session, spec, local(0)).id
        ids = range(1, CUSTOMERS + 1)
        session.execute(
            insert(Customer),
            [dict(id=i, name=f"顾客{i}", timezone="Asia/Shanghai", created_at=now) for i in ids],
        )
        session.execute(
            insert(Enrollment),
            [
                dict(
                    id=i, journey_id=journey_id, journey_name=spec.journey, customer_id=i,
                    entry_key=f"order:{i}", entered_at=local(0), enrolled_at=local(0),
                    status="active", holdout=False,
                )
                for i in ids
            ],
        )  # fmt: skip
        session.execute(
            insert(Delivery),
            [
                dict(
                    enrollment_id=i, journey_name=spec.journey, step_id=step.id, customer_id=i,
                    channel=step.send, purpose="marketing", status=DeliveryStatus.SENT,
                    idempotency_key=f"{i}:{step.id}", attempts=1, due_at=local(0),
                    created_at=local(0), updated_at=local(0),
                )
                for i in ids
                for step in spec.steps
            ],
        )  # fmt: skip
    engine.dispose()  # a closing backend reports its counters at once

    deadline = time.monotonic() + 15
    while _modified_since_analysis(engine).get("deliveries", 0) < CUSTOMERS * len(spec.steps):
        assert time.monotonic() < deadline, _modified_since_analysis(engine)
        time.sleep(0.2)

    complete = next(phase for phase in tick_phases(spec) if phase.name == "complete")
    ran: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ENROLLMENTS"):
            ran.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        result = complete.run(ctx, spec, now)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert result.counts["completed"] == CUSTOMERS
    # The statement completion ran, as the planner now plans it: the ledger through its index.
    statement, parameters = ran[0]
    with engine.connect() as connection:
        explained = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        plan = "\n".join(row[0] for row in explained)
    assert "deliveries" in plan, plan  # it reads the ledger (not a constant-false filter)
    assert "Seq Scan on deliveries" not in plan, plan
    modified = _modified_since_analysis(engine)
    # analysed before completion planned (its own update of enrollments counts after it)
    assert modified["deliveries"] == 0 and modified["customers"] == 0, modified
    assert refresh_stale_statistics(engine, ["deliveries"]) == []  # fresh now
