"""The sandbox gateway itself: signature checks, idempotency bookkeeping, fault determinism,
the inbox page, and its admin API."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from siyu.channels import aliyun_signature, webhook_signature
from siyu.channels.secrets import SANDBOX_ALIYUN_ACCESS_KEY_ID, SANDBOX_DEV_SECRETS
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox, start_sandbox


def sms_params(secret: str) -> dict[str, str]:
    return aliyun_signature.signed_params(
        "POST",
        "SendSms",
        {
            "PhoneNumbers": "13800000000",
            "SignName": "思域",
            "TemplateCode": "SMS_1",
            "TemplateParam": '{"content":"hi"}',
            "OutId": "o1",
        },
        access_key_id=SANDBOX_ALIYUN_ACCESS_KEY_ID,
        access_key_secret=secret,
    )


def test_sms_rejects_a_bad_signature_and_accepts_a_good_one(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    bad = httpx.post(sandbox.url + "/", params=sms_params("not-the-secret"))
    assert bad.status_code == 400 and bad.json()["Code"] == "SignatureDoesNotMatch"
    good_params = sms_params(SANDBOX_DEV_SECRETS["aliyun"])
    good = httpx.post(sandbox.url + "/", params=good_params)
    assert good.status_code == 200 and good.json()["Code"] == "OK"
    assert good.json()["BizId"].endswith("^0")
    replay = httpx.post(sandbox.url + "/", params=good_params)  # same nonce
    assert replay.json()["Code"] == "SignatureNonceUsed"
    assert len(client.messages(channel="sms")) == 1


def test_webhook_receiver_rejects_a_bad_signature(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    body = json.dumps({"type": "message.send", "data": {"customer_id": 1, "body": "x"}}).encode()
    ts = int(time.time())
    headers = {
        "webhook-id": "k1",
        "webhook-timestamp": str(ts),
        "content-type": "application/json",
        "webhook-signature": webhook_signature.sign("whsec_QUJDREVGR0g=", "k1", ts, body),
    }
    resp = httpx.post(sandbox.url + "/hooks/siyu", content=body, headers=headers)
    assert resp.status_code == 401
    headers["webhook-signature"] = webhook_signature.sign(
        SANDBOX_DEV_SECRETS["webhook"], "k1", ts, body
    )
    assert httpx.post(sandbox.url + "/hooks/siyu", content=body, headers=headers).status_code == 200
    again = httpx.post(sandbox.url + "/hooks/siyu", content=body, headers=headers)
    assert again.status_code == 200  # replay: stored answer, not a second message
    other = httpx.post(
        sandbox.url + "/hooks/siyu",
        content=body + b" ",
        headers={
            **headers,
            "webhook-signature": webhook_signature.sign(
                SANDBOX_DEV_SECRETS["webhook"], "k1", ts, body + b" "
            ),
        },
    )
    assert other.status_code == 422  # same key, different payload
    stats = client.stats()["channels"]["webhook"]
    assert (stats["messages"], stats["deduped"]) == (1, 1)


def test_wecom_rejects_wrong_secret_and_expired_tokens(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    wrong = httpx.get(sandbox.url + "/cgi-bin/gettoken", params={"corpid": "c", "corpsecret": "x"})
    assert wrong.json()["errcode"] == 40001
    token = httpx.get(
        sandbox.url + "/cgi-bin/gettoken",
        params={"corpid": "c", "corpsecret": SANDBOX_DEV_SECRETS["wecom"]},
    ).json()["access_token"]
    client.expire_tokens()
    resp = httpx.post(
        sandbox.url + "/cgi-bin/message/send",
        params={"access_token": token},
        json={"touser": "u", "msgtype": "text", "agentid": 1, "text": {"content": "hi"}},
    )
    assert resp.json()["errcode"] == 42001


def fault_sequence(url: str, seed: int) -> list[int]:
    with SandboxClient(url) as c:
        c.reset()
        c.set_faults(
            seed=seed,
            rules=[{"endpoint": "email.send", "kind": "http", "status": 503, "rate": 0.5}],
        )
    return [httpx.post(url + "/v3/mail/send", json={}).status_code for _ in range(16)]


def test_faults_are_deterministic_for_a_seed(sandbox: RunningSandbox) -> None:
    first = fault_sequence(sandbox.url, 5)
    assert first == fault_sequence(sandbox.url, 5)
    assert 503 in first and 401 in first  # some injected, some reached the (unauthorised) handler
    assert first != fault_sequence(sandbox.url, 6)


def test_invalid_fault_config_is_rejected_with_details(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    resp = httpx.post(sandbox.url + "/_sandbox/faults", json={"rules": [{"kind": "explode"}]})
    assert resp.status_code == 422 and resp.json()["details"]


def test_inbox_escapes_content_and_highlights_duplicates(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    from siyu.channels.base import OutboundMessage
    from siyu.channels.registry import build_channels
    from tests.channels.conftest import fast_config

    chans = build_channels(fast_config(sms={"precheck": "after_failure"}), base_url=sandbox.url)
    msg = OutboundMessage("dup-1", 1, "13800000009", "<script>alert(1)</script> 积分")
    chans["sms"].send_batch([msg])
    chans["sms"].send_batch([msg])
    page = httpx.get(sandbox.url + "/_sandbox/inbox").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('class="dup"') == 1 and "duplicate" in page
    for ch in chans.values():
        ch.close()


def test_reset_clears_messages_faults_and_tokens(
    sandbox: RunningSandbox, client: SandboxClient
) -> None:
    client.set_faults(latency_ms=5, refuse={"sms": ["1"]})
    httpx.get(
        sandbox.url + "/cgi-bin/gettoken",
        params={"corpid": "c", "corpsecret": SANDBOX_DEV_SECRETS["wecom"]},
    )
    client.reset()
    assert client.messages() == [] and client.calls() == []
    faults = httpx.get(sandbox.url + "/_sandbox/faults").json()
    assert faults["latency_ms"] == 0 and faults["refuse"] == {}
    assert sandbox.state.tokens == {}


def test_start_sandbox_refuses_non_loopback_and_stops_cleanly() -> None:
    with pytest.raises(ValueError):
        start_sandbox(host="0.0.0.0")
    with start_sandbox() as sb:
        assert httpx.get(sb.url + "/_sandbox/stats").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(sb.url + "/_sandbox/stats")
