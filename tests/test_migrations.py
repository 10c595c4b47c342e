"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from siyu.storage.engine import make_engine
from siyu.storage.migrate import upgrade
from siyu.storage.models import Base


def test_upgrade_head_on_an_empty_database_matches_the_models(database_url: str) -> None:
    url = database_url
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert diff == []
    assert {
        "customers",
        "channel_identities",
        "orders",
        "events",
        "consents",
        "suppressions",
        "journeys",
        "enrollments",
        "deliveries",
    } <= tables


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
