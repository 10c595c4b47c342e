"""Every channel delivers a batch through the sandbox over real HTTP."""

from __future__ import annotations

import pytest

from siyu.channels.base import Channel, PendingMessage, PollingChannel
from siyu.sandbox.client import SandboxClient
from tests.channels.conftest import batch

ADDRESSES = {
    "wecom_staff": lambda i: f"staff{i}",
    "service_account": lambda i: f"oa-openid-{i}",
    "miniprogram": lambda i: f"mp-openid-{i}",
    "sms": lambda i: f"1380013{i:04d}",
    "email": lambda i: f"user{i}@example.com",
    "webhook": lambda i: str(i),  # identity_kind customer_id: the id as text
}
SANDBOX_CHANNEL = {
    "wecom_staff": "wecom_staff",
    "service_account": "service_account",
    "miniprogram": "miniprogram",
    "sms": "sms",
    "email": "email",
    "webhook": "webhook",
}


@pytest.mark.parametrize("name", sorted(ADDRESSES))
def test_direct_channels_send_every_message_once(
    name: str, channels: dict[str, Channel], client: SandboxClient
) -> None:
    msgs = batch(name, 5, ADDRESSES[name], body=f"{name}: 您的积分即将到期")
    receipts = channels[name].send_batch(msgs)
    assert sorted(r.idempotency_key for r in receipts) == sorted(m.idempotency_key for m in msgs)
    assert {r.outcome for r in receipts} == {"sent"}
    got = client.messages(channel=SANDBOX_CHANNEL[name])
    assert sorted(m["customer"] for m in got) == sorted(m.address for m in msgs)
    assert all("积分" in m["content"] for m in got)
    assert client.stats()["duplicates"] == []


def test_wecom_pending_then_confirm_gives_sent_and_refused(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    client.set_faults(refuse={"wecom": ["wm-1"]})
    wecom = channels["wecom"]
    assert isinstance(wecom, PollingChannel)
    msgs = batch("w", 3, lambda i: f"wm-{i}")
    receipts = wecom.send_batch(msgs)
    assert {r.outcome for r in receipts} == {"pending"}
    assert len({r.provider_message_id for r in receipts}) == 1  # one task: identical text
    pending = [
        PendingMessage(
            m.idempotency_key, m.customer_id, m.address, str(receipts[0].provider_message_id)
        )
        for m in msgs
    ]
    assert {r.outcome for r in wecom.check_pending(pending)} == {"pending"}  # not confirmed yet

    client.confirm_wecom()
    outcome = {r.idempotency_key: (r.outcome, r.code) for r in wecom.check_pending(pending)}
    assert outcome == {
        "w-0": ("sent", None),
        "w-1": ("refused", "not_friend"),
        "w-2": ("sent", None),
    }


def test_wecom_groups_identical_text_into_one_task(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    msgs = batch("a", 3, lambda i: f"wm-a{i}", body="A") + batch(
        "b", 2, lambda i: f"wm-b{i}", body="B"
    )
    receipts = channels["wecom"].send_batch(msgs)
    assert len(receipts) == 5
    assert client.stats()["calls"]["wecom.add_msg_template"] == 2


def test_group_invite_sends_join_way_link_and_caches_it(
    channels: dict[str, Channel], client: SandboxClient
) -> None:
    invite = channels["wecom_group_invite"]
    invite.send_batch(batch("g1", 2, lambda i: f"wm-g{i}", body="欢迎加入会员群"))
    invite.send_batch(batch("g2", 1, lambda i: f"wm-h{i}", body="欢迎加入会员群"))
    stats = client.stats()["calls"]
    assert stats["wecom.add_join_way"] == 1  # created once, then cached
    msg = client.messages(channel="wecom")[0]
    (attachment,) = msg["meta"]["attachments"]
    assert attachment["msgtype"] == "link"
    assert "/_sandbox/join/" in attachment["link"]["url"]
