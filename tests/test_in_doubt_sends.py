"""A message in doubt is looked up before it is sent again. The tick's process dies after the
provider accepted a call and before the receipts reached the ledger: the rows stay `sending`.
Aliyun SMS does not deduplicate (not even by OutId), so a later tick that re-sent them blind
would deliver them twice. It looks them up with QuerySendDetails first: the ones found are
recorded as sent from the provider's record, and only the rest are sent."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.scenario import engine_context
from siyu.channels.base import OutboundMessage, Receipt
from siyu.engine.tick import run_tick
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import Delivery
from tests.bench_brand import one_step_brand
from tests.conftest import Shop, local

CUSTOMERS = 30
BATCH = 10  # enrollments claimed per transaction, each batch one SendBatchSms call


class ProcessDied(BaseException):
    """Nothing in the engine catches it, as nothing runs after a SIGKILL."""


class DiesAfterTheProviderAccepts:
    """The SMS channel, whose process dies right after the provider accepted the first call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        self.inner.send_batch(messages)
        raise ProcessDied


@pytest.mark.parametrize(
    ("channel", "batch_api"),
    [("sms", True), ("sms", False), ("wecom", None)],
    ids=["SendBatchSms", "SendSms", "wecom-add_msg_template"],
)
def test_messages_in_doubt_after_a_crash_are_looked_up_and_never_sent_twice(
    channel: str,
    batch_api: bool | None,
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
) -> None:
    spec = one_step_brand(tmp_path, sessions, shop, "doubt", channel, CUSTOMERS)
    ctx = engine_context(sessions, tmp_path, sandbox.url, batch_size=BATCH)
    adapter = ctx.channels[channel]
    if batch_api is not None:
        # SendSms with OutId, without the precheck before every first send: only messages in
        # doubt are looked up (the precheck would hide what this test is about).
        config = adapter.config.model_copy(update={"batch_api": batch_api})  # type: ignore[attr-defined]
        adapter.config = config  # type: ignore[attr-defined]
    dying = dataclasses.replace(
        ctx, channels={**ctx.channels, channel: DiesAfterTheProviderAccepts(adapter)}
    )
    client = SandboxClient(sandbox.url)
    client.set_faults(auto_confirm=True)  # WeCom: staff confirm each task at once

    run_tick(ctx, spec, local(0, 11))  # enrolls; the step is due a day later
    with pytest.raises(ProcessDied):
        run_tick(dying, spec, local(1, 12))
    assert len(client.messages(channel=channel)) == BATCH  # at the provider, not in the ledger
    with sessions() as session:
        assert Counter(session.scalars(select(Delivery.status))) == {"sending": BATCH}

    run_tick(ctx, spec, local(1, 12) + timedelta(minutes=5))  # the others go out; the lease
    assert len(client.messages(channel=channel)) == CUSTOMERS  # holds the ten in doubt
    with sessions() as session:
        assert Counter(session.scalars(select(Delivery.status)))["sending"] == BATCH
    run_tick(ctx, spec, local(1, 12) + timedelta(minutes=15))  # past the lease
    received = client.messages(channel=channel)
    assert len(received) == CUSTOMERS
    assert Counter(m["customer"] for m in received).most_common(1)[0][1] == 1
    assert client.stats()["duplicates"] == []
    with sessions() as session:
        rows = session.execute(select(Delivery.status, Delivery.provider_message_id)).all()
    assert {status for status, _ in rows} <= {"sent", "pending"} and len(rows) == CUSTOMERS
    assert {provider_id for _, provider_id in rows} == {m["provider_id"] for m in received}
    if channel == "sms":  # one BizId per call: a SendBatchSms call carries ten, SendSms one
        assert len({m["provider_id"] for m in received}) == (3 if batch_api else CUSTOMERS)


class DiesInItsSecondCall:
    """The SMS channel sending ten messages a call; its process dies right after the provider
    accepted the second call. Counts the messages it is handed in doubt."""

    max_batch = 10

    def __init__(self, inner: Any, die: bool = True) -> None:
        self.inner = inner
        self.calls = 0
        self.die = die
        self.in_doubt = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        self.calls += 1
        self.in_doubt += sum(1 for m in messages if m.in_doubt_since is not None)
        receipts = self.inner.send_batch(messages)
        if self.die and self.calls == 2:
            raise ProcessDied
        return receipts


def test_only_the_call_under_way_is_in_doubt_not_the_rest_of_its_claimed_batch(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop, sandbox: RunningSandbox
) -> None:
    """Thirty rows are claimed in one batch and handed over in three calls of ten. The process
    dies after the provider accepted the second call: ten were recorded as sent, ten are in
    doubt, and ten were never handed over. After the lease only the ten in doubt are looked
    up; the ten never handed over are sent without a lookup; each message arrives once."""
    spec = one_step_brand(tmp_path, sessions, shop, "doubt", "sms", CUSTOMERS)
    ctx = engine_context(sessions, tmp_path, sandbox.url, batch_size=CUSTOMERS)
    adapter = ctx.channels["sms"]
    config = adapter.config.model_copy(update={"batch_api": True})  # type: ignore[attr-defined]
    adapter.config = config  # type: ignore[attr-defined]
    client = SandboxClient(sandbox.url)

    run_tick(ctx, spec, local(0, 11))
    dying = DiesInItsSecondCall(adapter)
    with pytest.raises(ProcessDied):
        run_tick(
            dataclasses.replace(ctx, channels={**ctx.channels, "sms": dying}), spec, local(1, 12)
        )
    assert dying.calls == 2 and len(client.messages(channel="sms")) == 20
    with sessions() as session:
        statuses = Counter(
            (status, code)
            for status, code in session.execute(select(Delivery.status, Delivery.provider_code))
        )
    assert statuses == {("sent", None): 10, ("sending", None): 10, ("sending", "queued"): 10}

    after = DiesInItsSecondCall(adapter, die=False)
    later = dataclasses.replace(ctx, channels={**ctx.channels, "sms": after})
    run_tick(later, spec, local(1, 12) + timedelta(minutes=15))  # past the lease
    assert after.in_doubt == 10  # before: the whole claimed batch, 20, was in doubt
    received = client.messages(channel="sms")
    assert len(received) == CUSTOMERS
    assert Counter(m["customer"] for m in received).most_common(1)[0][1] == 1
    with sessions() as session:
        assert set(session.scalars(select(Delivery.status))) == {"sent"}


class DiesMidCall:
    """E-mail whose process dies inside its call: only the first message of the call reached
    the provider (a request applied, then the machine gone), the second never did."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        self.inner.send_batch(messages[:1])
        raise ProcessDied


def test_email_in_doubt_is_held_for_a_person_and_never_sent_again_blind(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
) -> None:
    """SendGrid can neither deduplicate nor be asked what it accepted. After a crash mid-call
    both messages are held `in_doubt` (not re-sent, however many ticks pass); explain says so;
    a person records the one that arrived as sent and has the other sent again: each customer
    gets exactly one e-mail."""
    from bench.scenario import write_project
    from siyu.engine.ledger import resolve_in_doubt
    from siyu.engine.versions import ensure_journey
    from siyu.reports.explain import explain
    from siyu.storage.engine import write_session

    spec = write_project(tmp_path, "mail", "email")
    with write_session(sessions) as session:
        ensure_journey(session, spec, local(0))
    buyers = [shop.customer(f"顾客{i}", identities=("email",)) for i in range(2)]
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    ctx = engine_context(sessions, tmp_path, sandbox.url)
    client = SandboxClient(sandbox.url)

    run_tick(ctx, spec, local(0, 11))
    dying = DiesMidCall(ctx.channels["email"])
    with pytest.raises(ProcessDied):
        run_tick(
            dataclasses.replace(ctx, channels={**ctx.channels, "email": dying}), spec, local(1, 12)
        )
    assert len(client.messages(channel="email")) == 1

    for minutes in (15, 60, 24 * 60):  # past the lease, and long after
        run_tick(ctx, spec, local(1, 12) + timedelta(minutes=minutes))
    assert len(client.messages(channel="email")) == 1  # nothing sent again blind
    with sessions() as session:
        rows = session.execute(
            select(Delivery.customer_id, Delivery.status, Delivery.reason_code)
        ).all()
        story = "\n".join(explain(session, spec, buyers[0], local(2)))
    assert {(status, code) for _, status, code in rows} == {("deferred", "in_doubt")}
    assert "in doubt since" in story and "siyu resolve" in story

    # The person checks the provider's side (here: the sandbox's record, by address).
    arrived = {m["customer"] for m in client.messages(channel="email")}
    now = local(2, 12)
    with write_session(sessions) as session:
        held = session.execute(select(Delivery.customer_id, Delivery.address)).all()
        for buyer, address in held:
            resolve_in_doubt(session, "mail", buyer, None, address in arrived, now)
    run_tick(ctx, spec, now + timedelta(minutes=1))
    received = client.messages(channel="email")
    assert len(received) == 2 and len({m["customer"] for m in received}) == 2
    with sessions() as session:
        assert set(session.scalars(select(Delivery.status))) == {"sent"}
