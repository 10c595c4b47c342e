"""The sandbox behaves like the providers toward their official clients and toward hostile
requests: the current Aliyun SMS SDK (V3 signature by default, V2 on request) and wechatpy's
documented calls succeed against it; wrong credentials get the provider's codes; malformed,
oversized or non-UTF-8 requests get the provider's error shape, never a 500; tracked links are
verified before redirecting and unsubscribe links resolve without letting a forged one in."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as SmsClient
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_tea_openapi.utils import Utils as OpenApiUtils
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import WeChatClientException

from siyu.channels import aliyun_signature
from siyu.channels.secrets import SANDBOX_ALIYUN_ACCESS_KEY_ID, SANDBOX_DEV_SECRETS
from siyu.metrics.links import TrackedLink, make_link_token
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox, start_sandbox
from siyu.storage.models import Suppression
from siyu.unsubscribe import make_token, unsubscribe_url
from tests.conftest import Shop

SECRET = "k" * 32


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox() as running:
        yield running


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[SandboxClient]:
    with SandboxClient(sandbox.url) as c:
        c.reset()
        yield c


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c


# --- Aliyun SMS: the official SDK ---------------------------------------------------------------
def sms_client(
    sandbox: RunningSandbox,
    *,
    v2: bool = False,
    key_id: str = SANDBOX_ALIYUN_ACCESS_KEY_ID,
    secret: str = SANDBOX_DEV_SECRETS["aliyun"],
) -> SmsClient:
    config = openapi_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=sandbox.url.removeprefix("http://"),
        protocol="HTTP",
    )
    if v2:
        config.signature_algorithm = "v2"  # the SDK's switch to the RPC (HMAC-SHA1) signature
    return SmsClient(config)


def send_one(sms: SmsClient, phone: str = "13800000001") -> Any:
    request = sms_models.SendSmsRequest(
        phone_numbers=phone,
        sign_name="思域",
        template_code="SMS_100",
        template_param=json.dumps({"code": "12 34", "name": "王*"}, ensure_ascii=False),
        out_id="hostile-1",
    )
    return sms.send_sms(request)


@pytest.mark.parametrize("v2", [False, True], ids=["default-v3", "v2"])
def test_the_aliyun_sdk_sends_sms_and_batches_in_both_signature_modes(
    sandbox: RunningSandbox, client: SandboxClient, v2: bool
) -> None:
    sms = sms_client(sandbox, v2=v2)
    single = send_one(sms)
    assert single.body.code == "OK" and single.body.biz_id.endswith("^0")
    batch = sms.send_batch_sms(
        sms_models.SendBatchSmsRequest(
            phone_number_json=json.dumps(["13800000002", "13800000003"]),
            sign_name_json=json.dumps(["思域", "思域"], ensure_ascii=False),
            template_code="SMS_100",
            template_param_json=json.dumps([{"a": "甲"}, {"a": "乙"}], ensure_ascii=False),
        )
    )
    assert batch.body.code == "OK"
    sent = {m["customer"]: m for m in client.messages(channel="sms")}
    assert set(sent) == {"13800000001", "13800000002", "13800000003"}
    assert sent["13800000001"]["content"] == "【思域】12 34 王*"
    assert sent["13800000003"]["content"] == "【思域】乙"
    # the scheme the sandbox verified: the SDK's default is V3 (Authorization header)
    assert {m["meta"]["auth"] for m in sent.values()} == {"v1" if v2 else "v3"}
    day = sent["13800000001"]["meta"]["day"]
    details = sms.query_send_details(
        sms_models.QuerySendDetailsRequest(
            phone_number="13800000001", send_date=day, page_size=10, current_page=1
        )
    )
    assert details.body.code == "OK" and details.body.total_count == "1"
    row = details.body.sms_send_detail_dtos.sms_send_detail_dto[0]
    assert (row.out_id, row.send_status) == ("hostile-1", 3)


@pytest.mark.parametrize("v2", [False, True], ids=["default-v3", "v2"])
def test_a_wrong_secret_or_key_is_refused_with_aliyuns_codes(
    sandbox: RunningSandbox, client: SandboxClient, v2: bool
) -> None:
    with pytest.raises(Exception) as wrong_secret:
        send_one(sms_client(sandbox, v2=v2, secret="not-the-secret"))
    assert getattr(wrong_secret.value, "code", None) == "SignatureDoesNotMatch"
    with pytest.raises(Exception) as wrong_key:
        send_one(sms_client(sandbox, v2=v2, key_id="LTAI-unknown"))
    assert getattr(wrong_key.value, "code", None) == "InvalidAccessKeyId.NotFound"
    assert client.messages(channel="sms") == []


def v3_signed(
    sandbox: RunningSandbox, query: dict[str, str], nonce: str, secret: str | None = None
) -> tuple[dict[str, str], str]:
    """Headers and URL of a V3-signed SendSms, signed by the SDK's own signer."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    host = sandbox.url.removeprefix("http://")
    headers = {
        "host": host,
        "x-acs-action": "SendSms",
        "x-acs-version": "2017-05-25",
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
    request = SimpleNamespace(method="POST", pathname="/", query=query, headers=headers)
    headers["Authorization"] = OpenApiUtils.get_authorization(
        request,
        "ACS3-HMAC-SHA256",
        headers["x-acs-content-sha256"],
        SANDBOX_ALIYUN_ACCESS_KEY_ID,
        secret or SANDBOX_DEV_SECRETS["aliyun"],
    )
    return headers, sandbox.url + "/"


SEND_QUERY = {
    "PhoneNumbers": "13800000004",
    "SignName": "思域",
    "TemplateCode": "SMS_100",
    "TemplateParam": '{"a":"1"}',
}


def test_v3_signature_covers_the_query_headers_and_nonce(
    sandbox: RunningSandbox, client: SandboxClient, http: httpx.Client
) -> None:
    headers, url = v3_signed(sandbox, SEND_QUERY, "nonce-a")
    tampered = {**SEND_QUERY, "PhoneNumbers": "13800000005"}
    answer = http.post(url, params=tampered, headers=headers)
    assert (answer.status_code, answer.json()["Code"]) == (400, "SignatureDoesNotMatch")
    assert http.post(url, params=SEND_QUERY, headers=headers).json()["Code"] == "OK"
    replay = http.post(url, params=SEND_QUERY, headers=headers)
    assert replay.json()["Code"] == "SignatureNonceUsed"
    unsigned_date = dict(headers, Authorization=headers["Authorization"].replace("x-acs-date;", ""))
    unsigned_date["x-acs-signature-nonce"] = "nonce-b"
    assert http.post(url, params=SEND_QUERY, headers=unsigned_date).status_code == 400
    assert [m["customer"] for m in client.messages(channel="sms")] == ["13800000004"]


@pytest.mark.parametrize("method", ["NONE", "HMAC-SHA256", ""])
def test_unsupported_signature_methods_are_refused(
    sandbox: RunningSandbox, client: SandboxClient, http: httpx.Client, method: str
) -> None:
    params = aliyun_signature.signed_params(
        "POST",
        "SendSms",
        {"PhoneNumbers": "13800000006", "SignName": "思域", "TemplateCode": "SMS_1"},
        access_key_id=SANDBOX_ALIYUN_ACCESS_KEY_ID,
        access_key_secret=SANDBOX_DEV_SECRETS["aliyun"],
    )
    params["SignatureMethod"] = method
    params["Signature"] = aliyun_signature.sign("POST", params, SANDBOX_DEV_SECRETS["aliyun"])
    answer = http.post(sandbox.url + "/", data=params)
    assert answer.status_code == 400
    assert answer.json()["Code"] == "IncompleteSignature"
    assert client.messages(channel="sms") == []


def test_the_sms_endpoint_never_serves_the_inbox(
    sandbox: RunningSandbox, client: SandboxClient, http: httpx.Client
) -> None:
    for answer in (http.get(sandbox.url + "/"), http.post(sandbox.url + "/")):
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["Code"] == "MissingParameter"
    for method in ("PUT", "DELETE", "PATCH"):
        answer = http.request(method, sandbox.url + "/")
        assert answer.status_code == 405 and "inbox" not in answer.text
    inbox = http.get(sandbox.url + "/_sandbox/inbox")
    assert inbox.status_code == 200 and "siyu sandbox inbox" in inbox.text


# --- WeCom: wechatpy -----------------------------------------------------------------------------
class SandboxWeCom(WeChatClient):  # type: ignore[misc]
    """wechatpy's enterprise client with its API base URL (and the gettoken URL it hard-codes)
    pointed at the sandbox."""

    def __init__(self, base: str, secret: str) -> None:
        super().__init__("wwsandboxcorp", secret)
        self.API_BASE_URL = base.rstrip("/") + "/cgi-bin/"
        self._http.trust_env = False

    def fetch_access_token(self) -> Any:
        return self._fetch_access_token(
            url=self.API_BASE_URL + "gettoken",
            params={"corpid": self.corp_id, "corpsecret": self.secret},
        )


@pytest.fixture
def wecom(sandbox: RunningSandbox, client: SandboxClient) -> SandboxWeCom:
    return SandboxWeCom(sandbox.url, SANDBOX_DEV_SECRETS["wecom"])


def test_wechatpy_mass_message_with_a_top_level_link_and_its_result(
    wecom: SandboxWeCom, client: SandboxClient
) -> None:
    link = {"title": "会员日", "picurl": "https://x.example/p.png", "url": "https://x.example/d"}
    created = wecom.external_contact.add_msg_template(
        {"external_userid": ["wmA", "wmB"], "sender": "zhangsan", "link": link}
    )
    assert created["errcode"] == 0 and created["fail_list"] == []
    client.confirm_wecom(msgid=created["msgid"])
    result = wecom.post(
        "externalcontact/get_groupmsg_send_result",
        data={"msgid": created["msgid"], "userid": "zhangsan"},
    )
    assert {r["external_userid"]: r["status"] for r in result["send_list"]} == {"wmA": 1, "wmB": 1}
    messages = client.messages(channel="wecom")
    assert [m["meta"]["attachments"] for m in messages] == [[{"msgtype": "link", "link": link}]] * 2


def test_wechatpy_text_join_way_and_app_message(wecom: SandboxWeCom, client: SandboxClient) -> None:
    text = wecom.external_contact.add_msg_template(
        {"external_userid": ["wmC"], "sender": "lisi", "text": {"content": "积分到期提醒"}}
    )
    assert text["errcode"] == 0
    way = wecom.post(
        "externalcontact/groupchat/add_join_way",
        data={"scene": 2, "chat_id_list": ["wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"]},
    )
    assert way["errcode"] == 0
    got = wecom.post("externalcontact/groupchat/get_join_way", data={"config_id": way["config_id"]})
    assert got["join_way"]["qr_code"].endswith(way["config_id"])
    sent = wecom.message.send_text(1000002, ["zhangsan"], "客户张三的积分明日过期")
    assert sent["errcode"] == 0 and sent["invaliduser"] == ""
    assert [m["customer"] for m in client.messages(channel="wecom_staff")] == ["zhangsan"]


def test_wechatpy_with_a_wrong_secret_gets_40001(sandbox: RunningSandbox) -> None:
    with pytest.raises(WeChatClientException) as error:
        SandboxWeCom(sandbox.url, "wrong-secret").fetch_access_token()
    assert error.value.errcode == 40001


@pytest.mark.parametrize(
    "template",
    [
        {"external_userid": ["wmA"], "sender": "s"},  # nothing to send
        {"external_userid": ["wmA"], "sender": "s", "link": {"title": "no url"}},
        {"external_userid": ["wmA"], "sender": "s", "attachments": [{"msgtype": "bomb"}]},
        {"external_userid": ["wmA"], "sender": "s", "text": "not an object"},
        {"external_userid": [{"x": 1}], "sender": "s", "text": {"content": "x"}},
        {"external_userid": "wmA", "sender": "s", "text": {"content": "x"}},
    ],
)
def test_malformed_mass_messages_are_refused_and_record_nothing(
    wecom: SandboxWeCom, client: SandboxClient, template: dict[str, Any]
) -> None:
    with pytest.raises(WeChatClientException) as error:
        wecom.external_contact.add_msg_template(template)
    assert error.value.errcode in (40058, 44004)
    assert client.messages() == []


# --- malformed, non-UTF-8 and oversized requests -------------------------------------------------
def wecom_token(http: httpx.Client, sandbox: RunningSandbox) -> str:
    answer = http.get(
        sandbox.url + "/cgi-bin/gettoken",
        params={"corpid": "c", "corpsecret": SANDBOX_DEV_SECRETS["wecom"]},
    )
    return str(answer.json()["access_token"])


DEEP = b"[" * 100_000 + b"]" * 100_000
# Bodies no endpoint can read: each must get an error code.
UNREADABLE: list[bytes] = [
    b"\xff\xfe\x00garbage",  # not UTF-8
    b'{"text": "\xff"}',
    DEEP,
    b"[]",
    b"null",
    b"1e999999",
]
# Plus bodies of the right syntax with wrong types: an answer in the provider's shape.
BODIES: list[bytes] = [
    *UNREADABLE,
    b'{"external_userid": ["a"], "sender": ["s"], "text": {"content": 1}}',
    b'{"limit": "ten", "cursor": [], "msgid": {}, "userid": 1}',
    b'{"start_time": "x", "end_time": null}',
    b'{"scene": 2, "chat_id_list": "abc"}',
    b'{"touser": 1, "agentid": 1, "text": {"content": "x"}, "duplicate_check_interval": "x"}',
    b'{"touser": "u", "agentid": 1, "text": "x"}',
    b'{"touser": "o", "template_id": "t", "data": {"a": [1]}, "client_msg_id": {}}',
]
WECOM_PATHS = [
    "externalcontact/add_msg_template",
    "externalcontact/get_groupmsg_task",
    "externalcontact/get_groupmsg_send_result",
    "externalcontact/get_groupmsg_list_v2",
    "externalcontact/groupchat/add_join_way",
    "externalcontact/groupchat/get_join_way",
    "message/send",
]


def assert_weixin_shape(answer: httpx.Response, body: bytes) -> None:
    assert answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text
    errcode = answer.json()["errcode"]
    assert isinstance(errcode, int)
    if body in UNREADABLE:
        assert errcode != 0, body[:40]


@pytest.mark.parametrize("path", WECOM_PATHS)
def test_wecom_endpoints_answer_errcodes_to_broken_bodies(
    sandbox: RunningSandbox, client: SandboxClient, http: httpx.Client, path: str
) -> None:
    token = wecom_token(http, sandbox)
    for body in BODIES:
        answer = http.post(f"{sandbox.url}/cgi-bin/{path}?access_token={token}", content=body)
        assert_weixin_shape(answer, body)
    assert client.messages() == []


def test_wechat_endpoints_answer_errcodes_to_broken_bodies(
    sandbox: RunningSandbox, client: SandboxClient, http: httpx.Client
) -> None:
    token = http.get(
        sandbox.url + "/cgi-bin/token",
        params={"appid": "wx1", "secret": SANDBOX_DEV_SECRETS["wechat"]},
    ).json()["access_token"]
    for path in ("message/template/send", "message/subscribe/send"):
        for body in BODIES:
            answer = http.post(f"{sandbox.url}/cgi-bin/{path}?access_token={token}", content=body)
            assert_weixin_shape(answer, body)
    for body in BODIES:
        answer = http.post(sandbox.url + "/cgi-bin/stable_token", content=body)
        assert_weixin_shape(answer, body)
    assert client.messages() == []


def signed_form(params: dict[str, str], action: str = "SendSms") -> dict[str, str]:
    return aliyun_signature.signed_params(
        "POST",
        action,
        params,
        access_key_id=SANDBOX_ALIYUN_ACCESS_KEY_ID,
        access_key_secret=SANDBOX_DEV_SECRETS["aliyun"],
    )


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("SendSms", {"PhoneNumbers": "13800000001", "SignName": "s", "TemplateCode": "t",
                     "TemplateParam": "[1, 2]"}),
        ("SendSms", {"PhoneNumbers": "13800000001", "SignName": "s", "TemplateCode": "t",
                     "TemplateParam": "[" * 50_000}),
        ("SendSms", {"PhoneNumbers": ",,,", "SignName": "s", "TemplateCode": "t"}),
        ("SendBatchSms", {"PhoneNumberJson": '"13800000001"', "SignNameJson": '"s"',
                          "TemplateCode": "t"}),
        ("SendBatchSms", {"PhoneNumberJson": '["13800000001", 2]', "SignNameJson": '["s", {}]',
                          "TemplateCode": "t", "TemplateParamJson": '[{}, "x"]'}),
        ("SendBatchSms", {"PhoneNumberJson": "[[1]]", "SignNameJson": "[[1]]",
                          "TemplateCode": "t", "TemplateParamJson": "[[1]]"}),
        ("QuerySendDetails", {"PhoneNumber": "13800000001", "SendDate": "20260101",
                              "PageSize": "ten", "CurrentPage": "x"}),
        ("Unknown", {}),
    ],
)  # fmt: skip
def test_sms_answers_aliyun_codes_to_malformed_parameters(
    sandbox: RunningSandbox,
    client: SandboxClient,
    http: httpx.Client,
    action: str,
    params: dict[str, str],
) -> None:
    answer = http.post(sandbox.url + "/", data=signed_form(params, action))
    assert answer.status_code < 500 and "Traceback" not in answer.text
    assert answer.json()["Code"] not in ("OK", "InternalError")
    assert client.messages() == []


def test_sms_answers_aliyun_codes_to_unreadable_bodies(
    sandbox: RunningSandbox, http: httpx.Client
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    for body in (b"Action=SendSms&SignName=\xff\xfe", b"%ff%fe=%zz&&&==", DEEP, b"\x00" * 100):
        answer = http.post(sandbox.url + "/", content=body, headers=form)
        assert answer.status_code < 500 and "Traceback" not in answer.text
        assert answer.json()["Code"] != "OK"
    unsigned_get = http.get(sandbox.url + "/", params={"Action": "SendSms"})
    assert unsigned_get.json()["Code"] == "InvalidAccessKeyId.NotFound"


def test_email_and_webhook_answer_their_shapes_to_broken_bodies(
    sandbox: RunningSandbox, client: SandboxClient, http: httpx.Client
) -> None:
    auth = {"authorization": f"Bearer {SANDBOX_DEV_SECRETS['sendgrid']}"}
    for body in [*BODIES, b'{"personalizations": {"a": 1}, "from": {"email": "a@b"}}',
                 b'{"personalizations": [{"to": "x"}], "from": "a@b"}']:  # fmt: skip
        answer = http.post(sandbox.url + "/v3/mail/send", content=body, headers=auth)
        assert answer.status_code == 400 and answer.json()["errors"], body[:40]
        hook = http.post(sandbox.url + "/hooks/crm", content=body)
        assert hook.status_code in (400, 401) and "error" in hook.json()
    assert client.messages() == []


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/cgi-bin/externalcontact/add_msg_template?access_token=x", "errcode"),
        ("/", "Code"),
        ("/v3/mail/send", "errors"),
        ("/hooks/crm", "error"),
    ],
)
def test_bodies_over_the_size_limit_get_413_in_the_providers_shape(
    sandbox: RunningSandbox, http: httpx.Client, path: str, shape: str
) -> None:
    big = b"x" * (1024 * 1024 + 1)
    declared = http.post(sandbox.url + path, content=big)
    assert declared.status_code == 413 and shape in declared.json()

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b"y" * 100_000

    streamed = http.post(sandbox.url + path, content=chunks())
    assert streamed.status_code == 413 and shape in streamed.json()


def test_the_size_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIYU_SANDBOX_MAX_BODY_BYTES", "2048")
    with start_sandbox() as small, httpx.Client(trust_env=False) as http:
        assert http.post(small.url + "/hooks/x", content=b"z" * 2049).status_code == 413
        assert http.post(small.url + "/hooks/x", content=b"z" * 2048).status_code == 401
    monkeypatch.setenv("SIYU_SANDBOX_MAX_BODY_BYTES", "lots")
    with pytest.raises(ValueError, match="SIYU_SANDBOX_MAX_BODY_BYTES"):
        start_sandbox()


# --- signed links --------------------------------------------------------------------------------
def unsigned(url: str) -> str:
    payload = json.dumps(["j", "s", 1, None, url]).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def test_tracked_links_redirect_only_when_signed(
    sandbox: RunningSandbox, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_LINK_SECRET", SECRET)
    good = make_link_token(TrackedLink("j", "s", 1, None, "https://shop.example/p/1"))
    answer = http.get(f"{sandbox.url}/r/{good}")
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://shop.example/p/1"
    payload, _, signature = good.partition(".")
    evil = unsigned("https://evil.example/")
    for token in (
        evil,  # no signature at all
        f"{evil}.{signature}",  # another payload under a real signature
        f"{payload}.{signature[:-2]}AA",  # signature altered
        f"{payload}.",
        "%00",
        "." * 5000,
        make_link_token(TrackedLink("j", "s", 1, None, "javascript:alert(1)")),
    ):
        refused = http.get(f"{sandbox.url}/r/{token}")
        assert refused.status_code == 404 and "location" not in refused.headers
    monkeypatch.delenv("SIYU_LINK_SECRET")
    monkeypatch.delenv("SIYU_UNSUBSCRIBE_SECRET", raising=False)
    assert http.get(f"{sandbox.url}/r/{good}").status_code == 404  # no key: verify nothing


@pytest.fixture
def sandbox_with_db(database_url: str) -> Iterator[RunningSandbox]:
    with start_sandbox(database_url=database_url) as running:
        yield running


def test_the_unsubscribe_link_in_messages_applies_its_token(
    sandbox_with_db: RunningSandbox,
    sessions: sessionmaker[Session],
    shop: Shop,
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", SECRET)
    monkeypatch.setenv("SIYU_LINK_BASE_URL", sandbox_with_db.url)
    customer, other = shop.customer(), shop.customer()
    link = unsubscribe_url(customer, "sms")  # exactly what templates put in messages
    answer = http.get(link)
    assert answer.status_code == 200 and "Unsubscribed" in answer.text
    assert http.post(link).status_code == 200  # RFC 8058 one-click; applying twice is harmless
    with sessions() as session:
        rows = session.execute(select(Suppression.customer_id, Suppression.channel)).all()
    assert rows == [(customer, "sms")]
    log = http.get(sandbox_with_db.url + "/_sandbox/unsubscribes").json()["unsubscribes"]
    assert [(u["customer_id"], u["channel"], u["applied"]) for u in log] == [
        (customer, "sms", True)
    ] * 2

    real = make_token(other, "*")
    forged = [
        f"{other}.*.AAAAAAAAAAAAAAAAAAAAAA",  # made-up signature
        real.replace(f"{other}.", f"{customer}.", 1),  # someone else's signature
        real.replace(".*.", ".sms.", 1),  # channel changed
        f"{other}.*",
        "x" * 3000,
    ]
    for token in forged:
        refused = http.get(f"{sandbox_with_db.url}/u/{token}")
        assert refused.status_code == 400 and "location" not in refused.headers
    with sessions() as session:
        assert (
            session.scalar(select(Suppression.id).where(Suppression.customer_id == other)) is None
        )


def test_unsubscribe_links_without_a_key_or_database_are_not_reported_done(
    sandbox: RunningSandbox, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", SECRET)
    token = make_token(7, "wecom")
    before = http.get(sandbox.url + "/_sandbox/unsubscribes").json()["count"]
    assert http.get(f"{sandbox.url}/u/{token}").status_code == 200  # verified, logged only
    log = http.get(sandbox.url + "/_sandbox/unsubscribes").json()["unsubscribes"]
    assert len(log) == before + 1 and log[-1]["applied"] is False and log[-1]["token"] == token
    monkeypatch.delenv("SIYU_UNSUBSCRIBE_SECRET")
    assert http.get(f"{sandbox.url}/u/{token}").status_code == 503


def test_an_unwritable_database_answers_503_not_done(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", SECRET)
    empty = f"sqlite:///{tmp_path / 'unmigrated.db'}"  # no tables
    with start_sandbox(database_url=empty) as running:
        answer = http.get(f"{running.url}/u/{make_token(1, 'sms')}")
        assert answer.status_code == 503 and "Traceback" not in answer.text
        assert http.get(running.url + "/_sandbox/unsubscribes").json()["count"] == 0


def test_a_sandbox_bug_answers_the_providers_system_error_without_a_traceback(
    sandbox: RunningSandbox, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siyu.sandbox import sms_api

    def broken(*_: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(sms_api, "_query", broken)
    query = {"PhoneNumber": "13800000001", "SendDate": "20260101"}
    answer = http.post(sandbox.url + "/", data=signed_form(query, "QuerySendDetails"))
    assert answer.status_code == 500
    assert answer.json()["Code"] == "InternalError"
    assert "secret internals" not in answer.text and "Traceback" not in answer.text


def test_signature_nonces_are_bounded(
    sandbox: RunningSandbox, client: SandboxClient, http: httpx.Client
) -> None:
    import time

    sandbox.state.used_nonces["expired"] = time.monotonic() - 3 * 3600
    query = {"PhoneNumber": "13800000001", "SendDate": "20260101"}
    assert http.post(sandbox.url + "/", data=signed_form(query, "QuerySendDetails")).is_success
    assert "expired" not in sandbox.state.used_nonces  # forgotten once it cannot pass again
    params = signed_form(query, "QuerySendDetails")
    params["SignatureNonce"] = "n" * 129
    params["Signature"] = aliyun_signature.sign("POST", params, SANDBOX_DEV_SECRETS["aliyun"])
    answer = http.post(sandbox.url + "/", data=params)
    assert (answer.status_code, answer.json()["Code"]) == (400, "InvalidParameter")
