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


def test_0007_lets_a_message_be_held_in_doubt_and_its_downgrade_keeps_the_row(
    database_url: str,
) -> None:
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from siyu.storage.migrate import alembic_config

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    upgrade(database_url, "0006")
    engine = make_engine(database_url)
    with engine.begin() as connection:  # parents, so that only the CHECK can refuse
        for statement in (
            "INSERT INTO customers (id, name, timezone, created_at)"
            " VALUES (1, 'c', 'Asia/Shanghai', :at)",
            "INSERT INTO journeys (id, name, version, spec_hash, spec, activated_at, created_at)"
            " VALUES (1, 'j', 1, 'h', '{}', :at, :at)",
            "INSERT INTO enrollments (id, journey_id, journey_name, customer_id, entry_key,"
            " entered_at, enrolled_at, status, holdout)"
            " VALUES (1, 1, 'j', 1, 'order:1', :at, :at, 'active', false)",
        ):
            connection.execute(text(statement), {"at": moment})
    insert = text(
        "INSERT INTO deliveries (enrollment_id, journey_name, step_id, customer_id, channel,"
        " purpose, idempotency_key, status, reason_code, due_at, created_at, updated_at,"
        " attempts) VALUES (1, 'j', 's', 1, 'email', 'marketing', 'k', 'deferred', :code,"
        " :at, :at, :at, 1)"
    )
    with engine.connect() as connection:
        connection.execute(insert, {"code": "retry", "at": moment})  # the parents are right
        connection.rollback()
        try:
            connection.execute(insert, {"code": "in_doubt", "at": moment})
            refused = False
        except IntegrityError as error:
            refused = "reason_code" in str(error) or "CHECK" in str(error)
        connection.rollback()
    engine.dispose()
    assert refused  # 0006's CHECK knows no such reason

    upgrade(database_url, "0007")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(insert, {"code": "in_doubt", "at": moment})
    engine.dispose()

    command.downgrade(alembic_config(database_url), "0006")
    engine = make_engine(database_url)
    with engine.connect() as connection:
        code = connection.scalar(text("SELECT reason_code FROM deliveries"))
    engine.dispose()
    assert code == "other"


def test_0010_adds_the_consent_history_and_its_downgrade_drops_it_alone(
    database_url: str,
) -> None:
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import text

    from siyu.storage.migrate import alembic_config

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    upgrade(database_url, "0009")
    upgrade(database_url, "0010")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO customers (id, name, timezone, created_at)"
                " VALUES (1, 'c', 'Asia/Shanghai', :at)"
            ),
            {"at": moment},
        )
        connection.execute(
            text(
                "INSERT INTO consents (customer_id, purpose, granted, updated_at)"
                " VALUES (1, 'marketing', false, :at)"
            ),
            {"at": moment},
        )
        connection.execute(
            text(
                "INSERT INTO consent_changes (customer_id, kind, name, previous, state, at)"
                " VALUES (1, 'consent', 'marketing', 'granted', 'denied', :at)"
            ),
            {"at": moment},
        )
        indexes = {i["name"] for i in inspect(connection).get_indexes("consent_changes")}
    engine.dispose()
    assert {"ix_consent_changes_at", "ix_consent_changes_customer_id"} <= indexes

    command.downgrade(alembic_config(database_url), "0009")
    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert "consent_changes" not in inspect(connection).get_table_names()
        assert connection.scalar(text("SELECT count(*) FROM consents")) == 1
    engine.dispose()
