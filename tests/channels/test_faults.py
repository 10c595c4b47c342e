"""Adapters against the sandbox's fault knobs: exactly-once delivery under transient failures,
token expiry, permanent errors, refusals, throttling, and SMS's missing idempotency."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from siyu.channels.base import Channel, ChannelError, OutboundMessage
from siyu.channels.registry import build_channels
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from tests.channels.conftest import batch, fast_config

DIRECT = {  # channel -> (sandbox channel, address)
    "service_account": ("service_account", lambda i: f"oa-{i}"),
    "webhook": ("webhook", lambda i: str(i)),
    "wecom_staff": ("wecom_staff", lambda i: f"staff{i}"),
    "sms": ("sms", lambda i: f"1390013{i:04d}"),
    "miniprogram": ("miniprogram", lambda i: f"mp-{i}"),
    "email": ("email", lambda i: f"u{i}@example.com"),
}


def delivered_per_customer(client: SandboxClient, channel: str) -> Counter[str]:
    return Counter(
        m["customer"]
        for m in client.messages(channel=channel)
        if m["status"] in ("sent", "pending")
    )


@pytest.mark.parametrize("name", sorted(set(DIRECT) - {"email"}))
def test_token_expiry_and_transient_errors_still_deliver_each_message_once(
    name: str, channels: dict[str, Channel], client: SandboxClient
) -> None:
    sandbox_channel, address = DIRECT[name]
    client.set_faults(
        seed=11,
        expire_tokens_every=3,
        rules=[
            {"endpoint": "*", "kind": "http", "status": 500, "rate": 0.2},
        ],
    )
    # distinct bodies: e-mail would otherwise carry all 20 in one request
    msgs = [OutboundMessage(f"{name}-{i}", i, address(i), f"第{i}条") for i in range(20)]
    receipts = channels[name].send_batch(msgs)
    assert set(Counter(r.outcome for r in receipts)) <= {"sent", "retry"}
    for _ in range(3):  # what the engine does with `retry`: send those again later
        again = {r.idempotency_key for r in receipts if r.outcome == "retry"}
        if not again:
            break
        receipts = [r for r in receipts if r.outcome != "retry"] + channels[name].send_batch(
            [m for m in msgs if m.idempotency_key in again]
        )
    assert Counter(r.outcome for r in receipts) == {"sent": 20}
    assert delivered_per_customer(client, sandbox_channel) == {m.address: 1 for m in msgs}
    assert client.stats()["faults_fired"], "the fault knob must actually have fired"


def test_email_holds_what_a_lost_answer_leaves_in_doubt_instead_of_sending_it_again(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    """SendGrid neither deduplicates nor can be asked what it accepted: a 5xx may have been
    applied, so its messages are answered `unknown` (held for a person), never retried blind.
    The others are sent once; none arrives twice."""
    client.set_faults(
        seed=11, rules=[{"endpoint": "*", "kind": "http", "status": 500, "rate": 0.2}]
    )
    msgs = [OutboundMessage(f"email-{i}", i, f"u{i}@example.com", f"第{i}条") for i in range(20)]
    receipts = channels["email"].send_batch(msgs)
    outcomes = Counter(r.outcome for r in receipts)
    assert set(outcomes) == {"sent", "unknown"} and sum(outcomes.values()) == 20
    assert {r.code for r in receipts if r.outcome == "unknown"} == {"in_doubt"}
    sent = {r.idempotency_key for r in receipts if r.outcome == "sent"}
    delivered = delivered_per_customer(client, "email")
    assert delivered == {m.address: 1 for m in msgs if m.idempotency_key in sent}
    assert len(client.calls(endpoint="email.send")) == 20  # one request each, none repeated


@pytest.mark.parametrize("name", ["service_account", "webhook", "wecom_staff", "sms"])
def test_timeouts_after_commit_and_a_rerun_never_send_twice(
    name: str, channels: dict[str, Channel], client: SandboxClient
) -> None:
    """The request is applied but the answer is lost (client timeout 0.5 s < hang 0.8 s)."""
    sandbox_channel, address = DIRECT[name]
    send_endpoint = {
        "service_account": "wechat.template_send",
        "webhook": "webhook.receive",
        "wecom_staff": "wecom.message_send",
        "sms": "sms.SendSms",
    }[name]
    client.set_faults(
        seed=3,
        hang_seconds=0.8,
        rules=[
            {"endpoint": send_endpoint, "kind": "timeout_after_commit", "every": 2, "times": 2},
        ],
    )
    msgs = batch(name, 4, address)
    first = channels[name].send_batch(msgs)
    assert {r.outcome for r in first} == {"sent"}
    rerun = channels[name].send_batch(msgs)  # the engine crashed before writing the ledger
    assert {r.outcome for r in rerun} == {"sent"}
    assert delivered_per_customer(client, sandbox_channel) == {m.address: 1 for m in msgs}
    assert client.stats()["duplicates"] == []
    assert client.stats()["faults_fired"] == {send_endpoint: 2}


def test_sms_without_outid_check_would_have_sent_twice(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    """The control experiment: the sandbox, like Aliyun, does not dedupe; the OutId lookup is
    what prevents the duplicate. Calling SendSms again blindly shows up as a duplicate."""
    chans = build_channels(fast_config(sms={"precheck": "after_failure"}), base_url=sandbox.url)
    sms = chans["sms"]
    msgs = batch("sms-dup", 1, lambda i: "13900000000")
    sms.send_batch(msgs)
    sms.send_batch(msgs)  # a rerun without the precheck: Aliyun sends it again
    (dup,) = client.stats()["duplicates"]
    assert dup == {"channel": "sms", "key": "sms-dup-0", "count": 2}
    for ch in chans.values():
        ch.close()


def test_sms_lost_answer_is_reconciled_by_outid_not_resent(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    chans = build_channels(fast_config(sms={"precheck": "after_failure"}), base_url=sandbox.url)
    client.set_faults(
        hang_seconds=0.8,
        rules=[{"endpoint": "sms.SendSms", "kind": "timeout_after_commit", "times": 1}],
    )
    (receipt,) = chans["sms"].send_batch(batch("sms-lost", 1, lambda i: "13900000001"))
    assert receipt.outcome == "sent"
    assert "QuerySendDetails" in (receipt.detail or "")
    assert client.stats()["calls"]["sms.SendSms"] == 1  # no second SendSms
    assert client.stats()["duplicates"] == []
    for ch in chans.values():
        ch.close()


def test_wecom_lost_answer_finds_the_task_instead_of_creating_another(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    client.set_faults(
        hang_seconds=0.8,
        rules=[{"endpoint": "wecom.add_msg_template", "kind": "timeout_after_commit", "times": 1}],
    )
    receipts = channels["wecom"].send_batch(batch("wl", 3, lambda i: f"wm-l{i}"))
    assert {r.outcome for r in receipts} == {"pending"}
    assert client.stats()["calls"]["wecom.add_msg_template"] == 1
    assert len(client.messages(channel="wecom")) == 3


@pytest.mark.parametrize(
    ("name", "endpoint", "code", "expect"),
    [
        ("service_account", "wechat.template_send", 40003, "40003"),
        ("wecom_staff", "wecom.message_send", 45002, "45002"),
        ("sms", "sms.SendSms", "isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_NUMBER_ILLEGAL"),
        ("webhook", "webhook.receive", 400, "400"),
        ("email", "email.send", 400, "400"),
    ],
)
def test_permanent_errors_fail_with_the_code_and_are_not_retried(
    name: str,
    endpoint: str,
    code: object,
    expect: str,
    channels: dict[str, Channel],
    client: SandboxClient,
) -> None:
    client.set_faults(rules=[{"endpoint": endpoint, "kind": "error", "code": code}])
    (receipt,) = channels[name].send_batch(batch(name, 1, DIRECT[name][1]))
    assert (receipt.outcome, receipt.code) == ("failed", expect)
    assert client.stats()["calls"][endpoint] == 1


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("service_account", "43004"),
        ("miniprogram", "43101"),
        ("sms", "isv.RECIPIENT_UNSUBSCRIBED"),
        ("webhook", "410"),
        ("email", "400"),
    ],
)
def test_a_refusing_customer_yields_refused_and_others_are_sent(
    name: str, code: str, channels: dict[str, Channel], client: SandboxClient
) -> None:
    address = DIRECT[name][1]
    client.set_faults(refuse={DIRECT[name][0]: [address(1)]})
    receipts = {r.idempotency_key: r for r in channels[name].send_batch(batch(name, 3, address))}
    assert (receipts[f"{name}-1"].outcome, receipts[f"{name}-1"].code) == ("refused", code)
    assert receipts[f"{name}-0"].outcome == receipts[f"{name}-2"].outcome == "sent"


def test_wecom_receive_limit_is_a_clear_failure(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    client.set_faults(auto_confirm=True, wecom_receive_limit=1)
    wecom = channels["wecom"]
    from siyu.channels.base import PendingMessage, PollingChannel

    assert isinstance(wecom, PollingChannel)
    results = []
    for body in ("第一条", "第二条"):
        (r,) = wecom.send_batch(batch(body, 1, lambda i: "wm-limit", body=body))
        results.extend(
            wecom.check_pending(
                [PendingMessage(r.idempotency_key, 0, "wm-limit", str(r.provider_message_id))]
            )
        )
    assert [(r.outcome, r.code) for r in results] == [("sent", None), ("failed", "receive_limit")]


def test_retry_after_is_honoured(channels: dict[str, Channel], client: SandboxClient) -> None:
    client.set_faults(
        rules=[
            {"endpoint": "webhook.receive", "kind": "rate_limit", "retry_after": 0.4, "times": 1}
        ]
    )
    started = time.monotonic()
    (receipt,) = channels["webhook"].send_batch(batch("ra", 1, DIRECT["webhook"][1]))
    assert receipt.outcome == "sent"
    calls = client.calls("webhook.receive")
    assert len(calls) == 2 and calls[1]["at"] - calls[0]["at"] >= 0.39
    assert time.monotonic() - started >= 0.4


def test_long_retry_after_becomes_a_deferred_receipt(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    client.set_faults(
        rules=[{"endpoint": "webhook.receive", "kind": "rate_limit", "retry_after": 120}]
    )
    (receipt,) = channels["webhook"].send_batch(batch("ra2", 1, DIRECT["webhook"][1]))
    assert (receipt.outcome, receipt.retry_after) == ("retry", 120.0)
    assert client.stats()["calls"]["webhook.receive"] == 1  # not retried inline


def test_persistent_transient_errors_end_as_retry_after_bounded_attempts(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    client.set_faults(rules=[{"endpoint": "wechat.template_send", "kind": "error", "code": -1}])
    (receipt,) = channels["service_account"].send_batch(batch("busy", 1, lambda i: "oa-x"))
    assert (receipt.outcome, receipt.code) == ("retry", "-1")
    assert client.stats()["calls"]["wechat.template_send"] == 4  # retry.attempts in fast_config


def test_client_side_rate_limit_holds(sandbox: RunningSandbox, client: SandboxClient) -> None:
    cfg = fast_config(webhook={"rate_limit": {"per_second": 20, "burst": 1}})
    chans = build_channels(cfg, base_url=sandbox.url)
    chans["webhook"].send_batch(batch("rl", 11, lambda i: str(i)))
    stamps = [c["at"] for c in client.calls("webhook.receive")]
    assert len(stamps) == 11
    assert stamps[-1] - stamps[0] >= 10 / 20 * 0.9  # 10 intervals at 20/s, generous bound
    for ch in chans.values():
        ch.close()


def test_unreachable_provider_raises_a_retryable_channel_error(client: SandboxClient) -> None:
    import socket

    with socket.socket() as s:  # a port that is certainly closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chans = build_channels(fast_config(), base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ChannelError) as info:
        chans["webhook"].send_batch(batch("down", 2, lambda i: str(i)))
    assert info.value.retryable is True
    for ch in chans.values():
        ch.close()


def test_bad_secret_is_a_non_retryable_channel_error(
    sandbox: RunningSandbox, client: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_WECOM_APP_SECRET", "wrong-secret-value-123")
    monkeypatch.setenv("SIYU_WECHAT_OA_SECRET", "wrong-secret-value-456")
    chans = build_channels(fast_config(), base_url=sandbox.url)
    for name in ("wecom_staff", "service_account"):
        with pytest.raises(ChannelError) as info:
            chans[name].send_batch(batch(name, 1, lambda i: "someone"))
        assert info.value.retryable is False
        assert "wrong-secret" not in str(info.value)
    assert client.messages() == []
    for ch in chans.values():
        ch.close()


def test_wecom_in_doubt_matches_earlier_tasks_by_recipient_not_by_text(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    """A crashed attempt's task is found by its recipients: a task of the same text for other
    customers is not taken for this customer's, who is then sent to."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    wecom = channels["wecom"]
    earlier = batch("earlier", 2, lambda i: f"wm-e{i}")  # one task, same text, two customers
    assert {r.outcome for r in wecom.send_batch(earlier)} == {"pending"}
    since = datetime.now(UTC) - timedelta(minutes=15)
    doubtful = [
        replace(earlier[0], in_doubt_since=since),  # in that task: found, not sent again
        replace(OutboundMessage("new-0", 9, "wm-n0", earlier[0].body), in_doubt_since=since),
    ]
    receipts = {r.idempotency_key: r for r in wecom.send_batch(doubtful)}
    assert receipts["earlier-0"].outcome == "pending"
    assert "not sent twice" in (receipts["earlier-0"].detail or "")
    assert receipts["new-0"].outcome == "pending"  # sent now, in a task of its own
    tasks = client.stats()["calls"]["wecom.add_msg_template"]
    assert tasks == 2  # the earlier one and the new customer's; none for earlier-0 again
    assert receipts["new-0"].provider_message_id != receipts["earlier-0"].provider_message_id


def test_sms_in_doubt_is_looked_up_once_before_it_is_sent(
    client: SandboxClient, sandbox: RunningSandbox
) -> None:
    """With the precheck before every first send (the default), a message in doubt is not
    prechecked as well: one QuerySendDetails over its doubt, then the send."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    built = build_channels(fast_config(), base_url=sandbox.url, seed=7)
    try:
        (message,) = batch("doubt", 1, lambda i: f"1390000{i:04d}")
        since = datetime.now(UTC) - timedelta(minutes=15)
        (receipt,) = built["sms"].send_batch([replace(message, in_doubt_since=since)])
    finally:
        for channel in built.values():
            channel.close()
    assert receipt.outcome == "sent"
    assert client.stats()["calls"]["sms.QuerySendDetails"] == 1
    assert len(client.messages(channel="sms")) == 1
