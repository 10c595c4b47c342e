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
        "provider_tokens",
    } <= tables


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)


def test_0006_adds_provider_tokens_and_its_downgrade_drops_it(database_url: str) -> None:
    from alembic import command

    from siyu.storage.migrate import alembic_config

    upgrade(database_url, "0005")
    upgrade(database_url, "0006")
    engine = make_engine(database_url)
    with engine.connect() as connection:
        columns = {c["name"]: c for c in inspect(connection).get_columns("provider_tokens")}
        key = inspect(connection).get_pk_constraint("provider_tokens")["constrained_columns"]
    assert set(columns) == {"key", "token", "expires_at", "updated_at", "fetches"}
    assert not any(c["nullable"] for c in columns.values()) and key == ["key"]
    engine.dispose()

    command.downgrade(alembic_config(database_url), "0005")
    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert "provider_tokens" not in inspect(connection).get_table_names()
    engine.dispose()
