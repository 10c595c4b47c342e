"""Faults end to end: the sandbox fails 20% of calls (5xx), throttles 5% (429 + Retry-After),
times out 2%, expires tokens; the tick process is killed with SIGKILL in the middle of a send
and started again. Every due message is delivered exactly once, counted by idempotency key at
the sandbox, and none is lost.

Channel: the service account (template messages). It has tokens (so expiry is exercised) and
dedupes on client_msg_id = our idempotency key, like WeChat. SMS (no provider dedupe; our
OutId precheck), e-mail and mini-program (no idempotency) are not exactly-once under timeouts
after the provider applied a request: docs/channels.md, "Known weak spots".
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox, start_sandbox
from siyu.storage.models import Delivery
from tests.bench_brand import one_step_brand, tick_command
from tests.conftest import ROOT, Shop, local

MESSAGES = 60
FAULTS = {
    "seed": 3,
    "hang_seconds": 0.5,
    "expire_tokens_every": 7,
    "latency_ms": 15,  # so the kill lands in the middle of the send
    "rules": [
        {"endpoint": "wechat.template_send", "kind": "timeout", "rate": 0.02},
        {"endpoint": "wechat.template_send", "kind": "http", "status": 500, "rate": 0.2},
        {
            "endpoint": "wechat.template_send",
            "kind": "rate_limit",
            "rate": 0.05,
            "retry_after": 0.05,
        },
    ],
}


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox() as running:
        yield running


def delivered(client: SandboxClient) -> Counter[str]:
    return Counter(
        m["key"] for m in client.messages(channel="service_account") if m["status"] == "sent"
    )


def test_every_due_message_is_delivered_exactly_once_through_faults_and_a_kill(
    tmp_path: Path,
    database_url: str,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
) -> None:
    one_step_brand(tmp_path, sessions, shop, "faults", "service_account", MESSAGES)
    client = SandboxClient(sandbox.url)
    client.set_faults(**FAULTS)
    command = tick_command(
        database_url, tmp_path, "faults", "service_account", sandbox.url,
        "--batch-size", "20", "--timeout", "0.25",
    )  # fmt: skip
    first = subprocess.Popen([*command, "--now", local(1, 12).isoformat()], cwd=ROOT)
    deadline = time.monotonic() + 60
    while sum(delivered(client).values()) < MESSAGES // 4 and time.monotonic() < deadline:
        assert first.poll() is None, "the tick finished before it could be killed"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    killed_after = sum(delivered(client).values())
    assert 0 < killed_after < MESSAGES

    moment = local(1, 12)
    for _ in range(12):  # later ticks: past the lease and the retry backoff
        if sum(delivered(client).values()) >= MESSAGES:
            break
        moment += timedelta(minutes=15)
        subprocess.run([*command, "--now", moment.isoformat()], cwd=ROOT, check=True)

    per_key = delivered(client)
    with sessions() as session:
        keys = set(session.scalars(select(Delivery.idempotency_key)))
        statuses = Counter(session.scalars(select(Delivery.status)))
    assert len(keys) == MESSAGES and set(per_key) == keys, "every due message, none lost"
    assert set(per_key.values()) == {1}, "none twice"
    assert statuses == {"sent": MESSAGES}
    fired = client.stats()["faults_fired"]
    assert fired, "the faults must actually have fired"


def test_a_kill_between_the_providers_answer_and_the_ledger_sends_nothing_twice(
    tmp_path: Path,
    database_url: str,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
) -> None:
    """SMS through SendBatchSms, which no provider call deduplicates: the sandbox applies the
    first call and then holds its answer; the tick is SIGKILLed while it waits, so twenty
    messages went out that the ledger still has as `sending`. The ticks after the lease look
    them up (QuerySendDetails) instead of sending them again."""
    one_step_brand(tmp_path, sessions, shop, "inside", "sms", MESSAGES)
    client = SandboxClient(sandbox.url)
    client.set_faults(
        hang_seconds=15,
        rules=[{"endpoint": "sms.SendBatchSms", "kind": "timeout_after_commit", "times": 1}],
    )
    command = tick_command(
        database_url,
        tmp_path,
        "inside",
        "sms",
        sandbox.url,
        "--batch-size",
        "20",
        "--timeout",
        "60",
    )
    first = subprocess.Popen([*command, "--now", local(1, 12).isoformat()], cwd=ROOT)
    deadline = time.monotonic() + 60
    while len(client.messages(channel="sms")) < 20:
        assert first.poll() is None and time.monotonic() < deadline, "no call was applied"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # the provider applied the call; its answer is held
    assert first.wait() == -signal.SIGKILL
    with sessions() as session:
        assert Counter(session.scalars(select(Delivery.status))) == {"sending": 20}

    client.set_faults()  # the provider answers again
    outputs = []
    for minutes in (15, 30):  # past the lease
        moment = local(1, 12) + timedelta(minutes=minutes)
        outputs.append(
            subprocess.run(
                [*command, "--now", moment.isoformat()],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    settled = json.loads(outputs[0])["hello"]  # the run says it took the 20 over
    assert settled["taken_over_after_lease"] == 20 and settled["sent"] == MESSAGES

    received = client.messages(channel="sms")
    assert len(received) == MESSAGES and client.stats()["duplicates"] == []
    with sessions() as session:
        assert Counter(session.scalars(select(Delivery.status))) == {"sent": MESSAGES}
