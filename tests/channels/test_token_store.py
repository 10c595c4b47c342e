"""Access tokens shared through the database (siyu/channels/token_store.py), over real HTTP to
the sandbox. Each "member" below builds its channels as a separate process does: its own
engine, its own token caches; what they share is only the database."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import Channel
from siyu.channels.registry import build_channels
from siyu.channels.secrets import SANDBOX_DEV_SECRETS
from siyu.channels.token_store import shared_token_caches
from siyu.channels.tokens import EARLY_EXPIRY
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import ProviderToken
from tests.channels.conftest import batch, fast_config

TOKEN_CALLS = {"wecom_staff": "wecom.gettoken", "service_account": "wechat.stable_token"}
ADDRESS = {"wecom_staff": lambda i: f"staff{i}", "service_account": lambda i: f"oa-{i}"}


@contextmanager
def member(database_url: str, sandbox: RunningSandbox) -> Iterator[dict[str, Channel]]:
    """The channels one process of the fleet builds."""
    engine = make_engine(database_url)
    caches = shared_token_caches(make_sessionmaker(engine))
    channels = build_channels(fast_config(), base_url=sandbox.url, seed=7, token_caches=caches)
    try:
        yield channels
    finally:
        for channel in channels.values():
            channel.close()
        engine.dispose()


def send(channels: dict[str, Channel], prefix: str, n: int = 3) -> None:
    for name, address in ADDRESS.items():
        receipts = channels[name].send_batch(batch(f"{prefix}-{name}", n, address))
        assert {r.outcome for r in receipts} == {"sent"}, receipts


def token_calls(client: SandboxClient) -> dict[str, int]:
    return {name: len(client.calls(endpoint=e)) for name, e in TOKEN_CALLS.items()}


ONE_EACH = {"wecom_staff": 1, "service_account": 1}


def test_two_processes_share_one_token_per_app(
    database_url: str,
    sessions: sessionmaker[Session],
    sandbox: RunningSandbox,
    client: SandboxClient,
) -> None:
    with member(database_url, sandbox) as first, member(database_url, sandbox) as second:
        for round_ in range(4):
            send(first, f"a{round_}")
            send(second, f"b{round_}")
    assert token_calls(client) == ONE_EACH
    with sessions() as session:
        rows = session.scalars(select(ProviderToken)).all()
    assert sorted(row.key.split(":")[0] for row in rows) == ["wechat", "wecom"]
    assert [row.fetches for row in rows] == [1, 1]
    assert all(row.expires_at > datetime.now(UTC) + timedelta(hours=1) for row in rows)


def test_after_the_provider_expires_its_tokens_the_fleet_refreshes_once(
    database_url: str,
    sessions: sessionmaker[Session],
    sandbox: RunningSandbox,
    client: SandboxClient,
) -> None:
    with member(database_url, sandbox) as first, member(database_url, sandbox) as second:
        send(first, "before-1")
        send(second, "before-2")
        client.expire_tokens()
        # both members, four threads each, all holding the token the provider now rejects
        with ThreadPoolExecutor(8) as pool:
            jobs = [
                pool.submit(send, channels, f"after-{i}-{m}", 2)
                for i in range(4)
                for m, channels in enumerate((first, second))
            ]
            for job in jobs:
                job.result()
    assert token_calls(client) == {"wecom_staff": 2, "service_account": 2}
    assert all(m["status"] == "sent" for m in client.messages())
    assert client.stats()["duplicates"] == []


def test_a_stored_token_about_to_expire_is_fetched_again_once(
    database_url: str,
    sessions: sessionmaker[Session],
    sandbox: RunningSandbox,
    client: SandboxClient,
) -> None:
    with member(database_url, sandbox) as first:
        send(first, "first")
    # as if fetched two hours ago: it expires within the margin
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        for row in session.scalars(select(ProviderToken)):
            row.expires_at = now + timedelta(seconds=EARLY_EXPIRY / 2)
            row.updated_at = now - timedelta(hours=2)
    with member(database_url, sandbox) as second, member(database_url, sandbox) as third:
        send(second, "second")
        send(third, "third")
    assert token_calls(client) == {"wecom_staff": 2, "service_account": 2}


def test_the_store_never_holds_the_secret(
    database_url: str,
    sessions: sessionmaker[Session],
    sandbox: RunningSandbox,
    client: SandboxClient,
) -> None:
    with member(database_url, sandbox) as channels:
        send(channels, "s")
    with sessions() as session:
        rows = [
            " ".join(map(str, r)) for r in session.execute(text("SELECT * FROM provider_tokens"))
        ]
    assert len(rows) == 2
    for secret in (SANDBOX_DEV_SECRETS["wecom"], SANDBOX_DEV_SECRETS["wechat"]):
        bare_hash = hashlib.sha256(secret.encode()).hexdigest()
        assert not any(secret in row or bare_hash in row for row in rows)


BROKEN = {
    "missing": None,  # a database not migrated to 0006
    # the row can be created and read, but no fetched token can be written
    "unwritable": (
        "CREATE TABLE provider_tokens (key VARCHAR(160) PRIMARY KEY, "
        "token VARCHAR(512) NOT NULL CHECK (token = ''), expires_at TIMESTAMP NOT NULL, "
        "updated_at TIMESTAMP NOT NULL, fetches INTEGER NOT NULL)"
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_store_never_stops_a_send(
    kind: str,
    database_url: str,
    sandbox: RunningSandbox,
    client: SandboxClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ddl = BROKEN[kind]
    if ddl is not None:
        engine = make_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text(ddl))
        engine.dispose()
    with caplog.at_level(logging.WARNING, logger="siyu.channels.token_store"):
        with member(database_url, sandbox) as first, member(database_url, sandbox) as second:
            for round_ in range(3):
                send(first, f"a{round_}")
                send(second, f"b{round_}")
    # each process fetched for itself, once per app: as before the store existed
    assert token_calls(client) == {"wecom_staff": 2, "service_account": 2}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, "one per process, not one per call"
    assert "sbx_" not in caplog.text, "no token in the log"
