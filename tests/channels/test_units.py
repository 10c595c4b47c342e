"""Unit tests without a server: error tables, backoff, rate limit, tokens, signatures, secrets,
configuration. Adapter error mapping uses httpx.MockTransport."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from siyu.channels import aliyun_signature, errors, webhook_signature
from siyu.channels.backoff import RetryPolicy, retrying
from siyu.channels.base import ChannelError, OutboundMessage
from siyu.channels.errors import Action, AmbiguousFault, ApiFault
from siyu.channels.ratelimit import TokenBucket
from siyu.channels.registry import ChannelConfigError, build_channels, load_channel_config
from siyu.channels.secrets import Secret, redact
from siyu.channels.tokens import TokenCache
from tests.channels.conftest import ROOT, fast_config

# A transcription of channels.md §7 (error -> action). If a code listed there is missing from
# the adapters' tables, or maps to another action, this fails.
SECTION_7 = {
    "wecom": {
        -1: "RETRY",
        6000: "RETRY",
        40014: "REFRESH",
        42001: "REFRESH",
        40001: "REFRESH",
        41001: "CONFIG",
        45009: "RATE",
        45033: "RETRY",
        40096: "PERM",
        84061: "REFUSE",
        41051: "DONE",
        81013: "PERM",
        81017: "PERM",
        48002: "CONFIG",
        60020: "CONFIG",
        40003: "CONFIG",
        60111: "CONFIG",
        40007: "PERM",
        44004: "PERM",
        45002: "PERM",
        40058: "PERM",
        40035: "PERM",
    },
    "wechat": {
        -1: "RETRY",
        40001: "REFRESH",
        40014: "REFRESH",
        42001: "REFRESH",
        45009: "RATE",
        45011: "RATE",
        40003: "PERM",
        43004: "REFUSE",
        43101: "REFUSE",
        48002: "REFUSE",
        40037: "CONFIG",
        40036: "PERM",
        47003: "PERM",
        41030: "PERM",
        47001: "PERM",
        48001: "CONFIG",
        48004: "CONFIG",
        50002: "CONFIG",
        45065: "DONE",
        45066: "RATE",
    },
    "sms": {
        "isv.BUSINESS_LIMIT_CONTROL": "RATE",
        "isv.DAY_LIMIT_CONTROL": "RATE",
        "isv.MONTH_LIMIT_CONTROL": "RATE",
        "Throttling": "RETRY",
        "Throttling.User": "RETRY",
        "isp.SYSTEM_ERROR": "RETRY",
        "InternalError": "RETRY",
        "UnknownError": "RETRY",
        "ServiceUnavailable": "RETRY",
        "isv.MOBILE_NUMBER_ILLEGAL": "PERM",
        "isv.MOBILE_COUNT_OVER_LIMIT": "PERM",
        "isv.TEMPLATE_MISSING_PARAMETERS": "PERM",
        "isv.INVALID_PARAMETERS": "PERM",
        "isv.INVALID_JSON_PARAM": "PERM",
        "isv.PARAM_LENGTH_LIMIT": "PERM",
        "isv.PARAM_NOT_SUPPORT_URL": "PERM",
        "isv.BLACK_KEY_CONTROL_LIMIT": "PERM",
        "isv.SMS_CONTENT_ILLEGAL": "PERM",
        "isv.SMS_TEMPLATE_ILLEGAL": "CONFIG",
        "isv.SMS_SIGNATURE_ILLEGAL": "CONFIG",
        "isv.SMS_SIGN_ILLEGAL": "CONFIG",
        "isv.SIGN_STATE_ILLEGAL": "CONFIG",
        "isv.SMS_SIGNATURE_SCENE_ILLEGAL": "CONFIG",
        "isv.AMOUNT_NOT_ENOUGH": "CONFIG",
        "isv.OUT_OF_SERVICE": "CONFIG",
        "isv.ACCOUNT_ABNORMAL": "CONFIG",
        "isv.PRODUCT_UN_SUBSCRIPT": "CONFIG",
        "isp.RAM_PERMISSION_DENY": "CONFIG",
        "isv.DENY_IP_RANGE": "CONFIG",
        "SignatureDoesNotMatch": "CONFIG",
        "InvalidAccessKeyId.NotFound": "CONFIG",
        "InvalidTimeStamp.Expired": "CONFIG",
    },
    "sendgrid": {
        400: "PERM",
        413: "PERM",
        401: "CONFIG",
        403: "CONFIG",
        429: "RATE",
        500: "RETRY",
        502: "RETRY",
        503: "RETRY",
        504: "RETRY",
    },
    "webhook": {410: "REFUSE", 429: "RATE", 502: "RATE", 504: "RATE"},
}
TABLES = {
    "wecom": errors.WECOM_CODES,
    "wechat": errors.WECHAT_CODES,
    "sms": errors.SMS_CODES,
    "sendgrid": errors.SENDGRID_STATUS,
    "webhook": errors.WEBHOOK_STATUS,
}


@pytest.mark.parametrize("provider", sorted(SECTION_7))
def test_every_code_in_section_7_is_mapped_to_its_action(provider: str) -> None:
    table = TABLES[provider]
    unmapped = sorted(str(c) for c in SECTION_7[provider] if c not in table)
    assert unmapped == [], f"{provider}: codes from channels.md §7 left unmapped: {unmapped}"
    wrong = {c: (table[c].name, a) for c, a in SECTION_7[provider].items() if table[c].name != a}
    assert wrong == {}


def test_sms_flow_control_window_is_parsed_from_the_message() -> None:
    assert (
        errors.classify_sms("isv.BUSINESS_LIMIT_CONTROL", "触发小时级流控Permits:5").retry_after
        == 3600
    )
    assert (
        errors.classify_sms("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1").retry_after
        == 60
    )
    assert errors.classify_sms("isp.SYSTEM_ERROR").ambiguous is True


def test_backoff_grows_exponentially_with_jitter_and_respects_retry_after() -> None:
    p = RetryPolicy(attempts=5, base_delay=1, max_delay=4, jitter=0.5)
    rng = random.Random(1)
    delays = [p.delay(n, rng) for n in range(1, 5)]
    for n, d in enumerate(delays, start=1):
        raw = min(4, 2 ** (n - 1))
        assert raw * 0.5 <= d <= raw
    assert p.delay(1, rng, retry_after=3.0) >= 3.0


def test_retrying_stops_on_permanent_and_gives_up_after_attempts() -> None:
    calls: list[int] = []

    def perm() -> None:
        calls.append(1)
        raise ApiFault(Action.PERM, "40003")

    with pytest.raises(ApiFault):
        retrying(perm, RetryPolicy(attempts=5, base_delay=0), sleep=lambda s: None)
    assert len(calls) == 1

    def busy() -> None:
        calls.append(1)
        raise ApiFault(Action.RETRY, "-1")

    calls.clear()
    with pytest.raises(ApiFault):
        retrying(busy, RetryPolicy(attempts=3, base_delay=0), sleep=lambda s: None)
    assert len(calls) == 3


def test_retrying_reconciles_before_resending_after_an_ambiguous_fault() -> None:
    sends: list[int] = []

    def send() -> str:
        sends.append(1)
        raise AmbiguousFault("read_timeout")

    result = retrying(
        send, RetryPolicy(attempts=3, base_delay=0), sleep=lambda s: None, reconcile=lambda: "found"
    )
    assert (result, len(sends)) == ("found", 1)


def test_token_bucket_spaces_calls() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(rate=10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        bucket.acquire()
    assert now[0] == pytest.approx(0.4)  # 2 free (burst), then 4 at 0.1 s


def test_token_cache_refreshes_once_for_many_threads() -> None:
    fetches: list[int] = []

    def fetch() -> tuple[str, float]:
        fetches.append(1)
        time.sleep(0.05)
        return f"t{len(fetches)}", 7200

    cache = TokenCache()
    stale = cache.get(fetch)
    threads = [threading.Thread(target=cache.invalidate, args=(stale, fetch)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetches) == 2 and cache.get(fetch) == "t2"
    assert "t2" not in repr(cache)


def test_aliyun_rpc_signature_matches_the_documented_example() -> None:
    # Aliyun's published RPC v1 example (DescribeRegions, secret "testsecret").
    params = {
        "Timestamp": "2016-02-23T12:46:24Z",
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Version": "2014-05-26",
        "SignatureVersion": "1.0",
    }
    assert aliyun_signature.sign("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_webhook_signature_roundtrip_and_rejections() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"a":1}'
    now = int(time.time())
    sig = webhook_signature.sign(secret, "msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": sig}
    assert webhook_signature.verify(secret, headers, body)
    assert not webhook_signature.verify(secret, headers, b'{"a":2}')
    assert not webhook_signature.verify(
        secret, {**headers, "webhook-timestamp": str(now - 999)}, body
    )
    assert not webhook_signature.verify("whsec_" + "QUJD", headers, body)


def test_secrets_never_show_in_repr_logs_or_errors(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = "super-secret-corp-value-42"
    monkeypatch.setenv("SIYU_WECOM_CONTACT_SECRET", value)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("gettoken"):
            return httpx.Response(
                200, json={"errcode": 60020, "errmsg": f"ip not allowed, {request.url}"}
            )
        return httpx.Response(500)

    caplog.set_level(logging.DEBUG)
    chans = build_channels(fast_config(), transport=httpx.MockTransport(handler))
    wecom = chans["wecom"]
    with pytest.raises(ChannelError) as info:
        wecom.send_batch([OutboundMessage("k", 1, "wm1", "hi")])
    assert info.value.retryable is False
    everything = caplog.text + str(info.value) + repr(info.value) + repr(wecom) + repr(wecom.api)  # type: ignore[attr-defined]
    assert "corpsecret=" in caplog.text  # the URL was logged, the value was not
    assert value not in everything
    assert repr(Secret(value, "env:X")) == "Secret(***, source='env:X')"
    assert (
        redact(f"https://x/y?access_token=abc123&corpsecret={value}")
        == "https://x/y?access_token=***&corpsecret=***"
    )


def test_sendgrid_partial_400_drops_only_the_named_recipient() -> None:
    sent: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        to = [p["to"][0]["email"] for p in body["personalizations"]]
        if "gone@example.com" in to:
            i = to.index("gone@example.com")
            return httpx.Response(
                400,
                json={
                    "errors": [
                        {"field": f"personalizations.{i}.to.0.email", "message": "unsubscribed"}
                    ]
                },
            )
        sent.append(to)
        return httpx.Response(202, headers={"X-Message-Id": "m1"})

    chans = build_channels(fast_config(), transport=httpx.MockTransport(handler))
    msgs = [
        OutboundMessage(f"k{i}", i, a, "Subject: 会员日\n正文")
        for i, a in enumerate(["a@example.com", "gone@example.com", "b@example.com"])
    ]
    outcomes = {r.idempotency_key: r.outcome for r in chans["email"].send_batch(msgs)}
    assert outcomes == {"k0": "sent", "k1": "refused", "k2": "sent"}
    assert sent == [["a@example.com", "b@example.com"]]


def test_unknown_keys_are_errors_with_position_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(
        "channels:\n  wecom:\n    corpid: x\n    sendr: zhangsan\n  sms:\n    type: smss\n",
        encoding="utf-8",
    )
    with pytest.raises(ChannelConfigError) as info:
        load_channel_config(path)
    text = str(info.value)
    assert f"{path}:4:5: channels.wecom.sendr: unknown key — did you mean 'sender'?" in text
    assert "did you mean 'sms'?" in text
    assert "2 errors" in text or "3 errors" in text


def test_non_loopback_base_url_is_refused_unless_allowed() -> None:
    with pytest.raises(ChannelConfigError, match="not a loopback address"):
        build_channels(fast_config(), base_url="https://qyapi.weixin.qq.com")
    cfg = fast_config().model_copy(update={"allow_remote": True})
    with pytest.raises(ChannelConfigError, match="no secret found"):  # and no dev secret remotely
        build_channels(cfg, base_url="https://qyapi.weixin.qq.com")
    for ok in ("http://localhost:1", "http://[::1]:1", "http://127.0.0.1:1"):
        assert set(build_channels(fast_config(), base_url=ok)) == set(fast_config().channels)


def test_checked_in_channels_yaml_is_valid_and_exposes_quotas() -> None:
    cfg = load_channel_config(ROOT / "channels.yaml")
    assert set(cfg.channels) == {
        "wecom",
        "wecom_group_invite",
        "wecom_staff",
        "service_account",
        "miniprogram",
        "sms",
        "email",
        "webhook",
    }
    quota = cfg.quotas()["wecom"]
    assert (quota.per_customer, quota.window.total_seconds()) == (1, 86400)
    identity = {n: c.identity_kind for n, c in build_channels(cfg).items()}
    assert identity == {
        "wecom": "wecom_external_userid",
        "wecom_group_invite": "wecom_external_userid",
        "wecom_staff": "wecom_userid",
        "service_account": "wechat_openid",
        "miniprogram": "miniprogram_openid",
        "sms": "mobile",
        "email": "email",
        "webhook": "customer_id",
    }


def test_fast_percent_encoding_matches_rfc3986_quote() -> None:
    """The signature's encoder works a run of bytes at a time; it must equal urllib's."""
    import random
    from urllib.parse import quote

    from siyu.channels.aliyun_signature import percent_encode

    rng = random.Random(7)
    alphabet = "aZ09-_.~ *+/&=%!()'回T退订您好，😀\n"
    samples = ["", "plain", "【悦享生活】您好 回T退订"] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(300)
    ]
    for sample in samples:
        assert percent_encode(sample) == quote(sample, safe="-_.~")


def test_canonical_query_encoding_equals_the_generic_encoder() -> None:
    """The string to sign encodes the canonical query with three replaces; it must be what
    percent_encode() gives, for queries holding every kind of character."""
    import random

    from siyu.channels.aliyun_signature import _encode_canonical, canonical_query, percent_encode

    rng = random.Random(11)
    alphabet = "aZ09-_.~ *+/&=%!()'回T退订您好，😀\n\"[]{}:"
    for _ in range(200):
        params = {
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 8))): "".join(
                rng.choice(alphabet) for _ in range(rng.randrange(0, 60))
            )
            for _ in range(rng.randrange(1, 6))
        }
        canonical = canonical_query(params)
        assert _encode_canonical(canonical) == percent_encode(canonical)
