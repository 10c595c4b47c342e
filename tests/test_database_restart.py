"""A database restart cuts every pooled connection: the engine finds a dead one at checkout
and replaces it, so the next phase works without spending one of its retries (PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from siyu.storage.engine import make_engine


def test_a_pooled_connection_cut_by_the_server_is_replaced_at_checkout(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no server to cut a connection")
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        other = make_engine(database_url)
        with other.connect() as admin:  # as a restart would: the server ends the session
            assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        other.dispose()
        with engine.connect() as connection:  # the same pool's only connection, now dead
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()
