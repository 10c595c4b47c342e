"""Emulated Aliyun SMS (dysmsapi 2017-05-25) RPC endpoint: SendSms, SendBatchSms and
QuerySendDetails, with signature verification: RPC v1 (HMAC-SHA1 query ``Signature``, what
the channel adapter sends) and V3 (ACS3-HMAC-SHA256 ``Authorization`` header, the current
SDK's default). Any other signature method is refused, as Aliyun does.

Like the real service it does NOT dedupe on OutId: a retried SendSms sends again. It counts
deliveries per OutId, so a test can see the duplicate an adapter would have caused.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import secrets
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from siyu.channels import aliyun_signature
from siyu.channels.secrets import SANDBOX_ALIYUN_ACCESS_KEY_ID, SANDBOX_DEV_SECRETS
from siyu.sandbox import aliyun_v3
from siyu.sandbox.faults import FaultRule
from siyu.sandbox.form import parse_form
from siyu.sandbox.gateway import json_response, provider_call
from siyu.sandbox.state import SHANGHAI, SandboxState

MAX_TIME_SKEW = 15 * 60
MAX_NONCE_LENGTH = 128  # SDKs send a 32-hex UUID
_MOBILE = re.compile(r"^(\+?86)?1\d{10}$")
# One encoder for every batch message's key: json.dumps() with options builds a new one per call.
_KEY_JSON = json.JSONEncoder(sort_keys=True)
_ACTIONS = ("SendSms", "SendBatchSms", "QuerySendDetails")
_V3_DATE = "%Y-%m-%dT%H:%M:%SZ"
# Gateway-level codes come back with a non-2xx status; business codes with HTTP 200.
_GATEWAY_STATUS = {
    "MissingParameter": 400,
    "InvalidParameter": 400,
    "IncompleteSignature": 400,
    "InvalidTimeStamp.Format": 400,
    "InvalidAction.NotFound": 404,
    "Throttling": 400,
    "Throttling.User": 400,
    "SignatureDoesNotMatch": 400,
    "InvalidTimeStamp.Expired": 400,
    "SignatureNonceUsed": 400,
    "InvalidAccessKeyId.NotFound": 404,
    "InternalError": 500,
    "UnknownError": 500,
    "ServiceUnavailable": 503,
}


def answer(code: str, message: str = "", **extra: Any) -> Response:
    body = {
        "Code": code,
        "Message": message or code,
        "RequestId": str(uuid.uuid4()).upper(),
        **extra,
    }
    return json_response(body, status=_GATEWAY_STATUS.get(code, 200))


def render_error(rule: FaultRule) -> Response:
    if rule.status and rule.status != 200 and rule.code is None:
        return Response("sandbox injected error", status_code=rule.status)
    return answer(str(rule.code or "isp.SYSTEM_ERROR"), "sandbox injected error")


def _biz_id() -> str:
    return f"{secrets.randbelow(10**17):017d}{int(time.time()) % 10:d}^0"


def render_invalid(message: str) -> Response:
    return answer("isv.INVALID_PARAMETERS", message)


def routes(state: SandboxState) -> list[Route]:
    async def rpc(request: Request) -> Response:
        raw = await request.body()
        params = dict(request.query_params)
        if raw and "form" in request.headers.get("content-type", ""):
            try:
                params.update(parse_form(raw.decode("utf-8")))
            except UnicodeDecodeError:
                return answer("InvalidParameter", "The request body is not UTF-8 encoded.")
        v3 = "authorization" in request.headers
        auth = "v3" if v3 else "v1"
        action = request.headers.get("x-acs-action", "") if v3 else params.get("Action", "")
        if not action:
            return answer(
                "MissingParameter",
                'The input parameter "Action" that is mandatory for processing this request '
                "is not supplied.",
            )
        endpoint = f"sms.{action if action in _ACTIONS else 'Unknown'}"

        async def handle(_: Request) -> Response:
            if v3:
                problem = _check_v3(state, request, raw)
            else:
                problem = _check_signature(state, request.method, params)
            if problem is not None:
                return problem
            if action == "SendSms":
                return _send_sms(state, params, auth)
            if action == "SendBatchSms":
                return _send_batch(state, params, auth)
            if action == "QuerySendDetails":
                return _query(state, params)
            return answer("InvalidAction.NotFound", f"Specified api {action} is not found")

        return await provider_call(state, endpoint, request, handle, render_error, render_invalid)

    return [Route("/", rpc, methods=["GET", "POST"])]


def _unsupported_signature(what: str) -> Response:
    return answer(
        "IncompleteSignature",
        f"The request signature does not conform to Aliyun standards ({what}).",
    )


def _check_time(stamp: str) -> Response | None:
    try:
        ts = dt.datetime.strptime(stamp, _V3_DATE)
    except ValueError:
        return answer("InvalidTimeStamp.Format", "Timestamp format invalid")
    if abs(ts.replace(tzinfo=dt.UTC).timestamp() - time.time()) > MAX_TIME_SKEW:
        return answer("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    return None


def _use_nonce(state: SandboxState, nonce: str) -> Response | None:
    """A nonce is accepted once. It is remembered only as long as its request's timestamp
    could still pass (twice the skew window), so the set stays bounded."""
    if not nonce:
        return answer("MissingParameter", 'The input parameter "SignatureNonce" is not supplied.')
    if len(nonce) > MAX_NONCE_LENGTH:
        return answer("InvalidParameter", f"SignatureNonce longer than {MAX_NONCE_LENGTH}")
    now = time.monotonic()
    with state.lock:
        seen = state.used_nonces
        if nonce in seen:
            return answer("SignatureNonceUsed", "Specified signature nonce was used already.")
        # Insertion order is time order: drop expired nonces from the front (amortised O(1)).
        for oldest, at in list(itertools.islice(seen.items(), 64)):
            if now - at <= 2 * MAX_TIME_SKEW:
                break
            del seen[oldest]
        seen[nonce] = now
    return None


def _check_v3(state: SandboxState, request: Request, body: bytes) -> Response | None:
    """The V3 (ACS3-HMAC-SHA256) checks, in the order Aliyun's gateway reports them."""
    auth = aliyun_v3.parse_authorization(request.headers.get("authorization", ""))
    if auth is None:
        return _unsupported_signature("Authorization is not ACS3-HMAC-SHA256")
    if auth.access_key_id != SANDBOX_ALIYUN_ACCESS_KEY_ID:
        return answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    unsigned = aliyun_v3.missing_signed_headers(auth, request.headers)
    if unsigned:
        return _unsupported_signature(f"header {unsigned[0]} is not signed")
    late = _check_time(request.headers.get("x-acs-date", ""))
    if late is not None:
        return late
    query = request.query_params.multi_items()
    if not aliyun_v3.verify(
        SANDBOX_DEV_SECRETS["aliyun"],
        auth,
        request.method,
        request.url.path,
        query,
        request.headers,
        body,
    ):
        return answer(
            "SignatureDoesNotMatch", "Specified signature does not match our calculation."
        )
    return _use_nonce(state, request.headers.get("x-acs-signature-nonce", ""))


def _check_signature(state: SandboxState, method: str, params: dict[str, str]) -> Response | None:
    """The RPC v1 checks: key, HMAC-SHA1 1.0 only (``SignatureMethod=NONE`` and the like are
    refused before anything is computed), time window, signature, nonce."""
    if params.get("AccessKeyId") != SANDBOX_ALIYUN_ACCESS_KEY_ID:
        return answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if params.get("SignatureMethod") != "HMAC-SHA1":
        return _unsupported_signature("SignatureMethod must be HMAC-SHA1")
    if params.get("SignatureVersion") != "1.0":
        return _unsupported_signature("SignatureVersion must be 1.0")
    if not params.get("Signature"):
        return answer("MissingParameter", 'The input parameter "Signature" is not supplied.')
    late = _check_time(params.get("Timestamp", ""))
    if late is not None:
        return late
    if not aliyun_signature.verify(method, params, SANDBOX_DEV_SECRETS["aliyun"]):
        expected = aliyun_signature.string_to_sign(method, params)
        return answer(
            "SignatureDoesNotMatch",
            f"Specified signature is not matched with our calculation. server string "
            f"to sign is:{expected}",
        )
    return _use_nonce(state, params.get("SignatureNonce", ""))


def _content(sign: str, template_code: str, param: dict[str, Any]) -> str:
    return f"【{sign}】" + " ".join(str(v) for v in param.values())


def _stamp() -> dict[str, str]:
    """The send time a call's messages are recorded with (Beijing time, as the console shows)."""
    now = dt.datetime.now(SHANGHAI)
    return {"send_date": now.strftime("%Y-%m-%d %H:%M:%S"), "day": now.strftime("%Y%m%d")}


def _deliver(
    state: SandboxState,
    phone: str,
    sign: str,
    template_code: str,
    param: dict[str, Any],
    out_id: str,
    biz_id: str,
    key: str,
    stamp: dict[str, str],
) -> Response | None:
    """Record one SMS (lock held); a Response if this number is rejected."""
    if not _MOBILE.match(phone) or state.faults.invalid("sms", phone):
        return answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
    if state.faults.refuses("sms", phone):
        return answer("isv.RECIPIENT_UNSUBSCRIBED", "该号码已回复R退订 (sandbox)")
    state.record(
        "sms",
        "SendSms",
        phone,
        _content(sign, template_code, param),
        key=key,
        provider_id=biz_id,
        out_id=out_id,
        template_code=template_code,
        sign_name=sign,
        **stamp,
    )
    return None


def _send_sms(state: SandboxState, p: dict[str, str], auth: str) -> Response:
    phones = [x for x in p.get("PhoneNumbers", "").split(",") if x]
    if not phones or not p.get("SignName") or not p.get("TemplateCode"):
        return answer("isv.INVALID_PARAMETERS", "PhoneNumbers, SignName, TemplateCode required")
    if len(phones) > 1000:
        return answer("isv.MOBILE_COUNT_OVER_LIMIT", "at most 1000 numbers")
    try:
        param = json.loads(p.get("TemplateParam") or "{}")
    except (ValueError, RecursionError):
        return answer("isv.INVALID_JSON_PARAM", "TemplateParam is not JSON")
    if not isinstance(param, dict):
        return answer("isv.INVALID_JSON_PARAM", "TemplateParam must be a JSON object")
    biz_id = _biz_id()
    out_id = p.get("OutId", "")
    stamp = {**_stamp(), "auth": auth}  # which signature scheme the call used
    with state.lock:
        for phone in phones:
            rejected = _deliver(
                state,
                phone,
                p["SignName"],
                p["TemplateCode"],
                param,
                out_id,
                biz_id,
                key=out_id or f"{phone}|{p.get('TemplateParam')}",
                stamp=stamp,
            )
            if rejected is not None:
                return rejected
    return answer("OK", "OK", BizId=biz_id)


def _send_batch(state: SandboxState, p: dict[str, str], auth: str) -> Response:
    try:
        phones = json.loads(p.get("PhoneNumberJson") or "[]")
        signs = json.loads(p.get("SignNameJson") or "[]")
        params = json.loads(p.get("TemplateParamJson") or "[]")
    except (ValueError, RecursionError):
        return answer("isv.INVALID_JSON_PARAM", "batch parameters must be JSON arrays")
    if not all(isinstance(x, list) for x in (phones, signs, params)):
        return answer("isv.INVALID_JSON_PARAM", "batch parameters must be JSON arrays")
    if not phones or len(phones) > 100:
        return answer("isv.MOBILE_COUNT_OVER_LIMIT", "1..100 numbers per SendBatchSms")
    if len(signs) != len(phones) or (params and len(params) != len(phones)):
        return answer("isv.INVALID_PARAMETERS", "arrays must have the same length")
    if not all(isinstance(x, str) for x in phones + signs) or not all(
        isinstance(x, dict) for x in params
    ):
        return answer("isv.INVALID_PARAMETERS", "numbers and signs are strings, params objects")
    biz_id = _biz_id()
    stamp = {**_stamp(), "auth": auth}  # which signature scheme the call used
    with state.lock:
        for i, phone in enumerate(phones):
            param = params[i] if params else {}
            rejected = _deliver(
                state,
                phone,
                signs[i],
                p.get("TemplateCode", ""),
                param,
                "",
                biz_id,
                key=f"{phone}|{_KEY_JSON.encode(param)}",
                stamp=stamp,
            )
            if rejected is not None:
                return rejected
    return answer("OK", "OK", BizId=biz_id)


def _query(state: SandboxState, p: dict[str, str]) -> Response:
    phone, day = p.get("PhoneNumber", ""), p.get("SendDate", "")
    if not phone or not re.fullmatch(r"\d{8}", day):
        return answer("isv.INVALID_PARAMETERS", "PhoneNumber and SendDate(yyyyMMdd) required")
    size = max(1, min(int(p.get("PageSize") or 10), 50))
    page = max(1, int(p.get("CurrentPage") or 1))
    with state.lock:
        rows = [
            m
            for m in state.messages
            if m.channel == "sms" and m.customer == phone and m.meta.get("day") == day
        ]
    dtos = [
        {
            "PhoneNum": m.customer,
            "SendStatus": 3,
            "ErrCode": "DELIVERED",
            "TemplateCode": m.meta.get("template_code"),
            "Content": m.content,
            "SendDate": m.meta.get("send_date"),
            "ReceiveDate": m.meta.get("send_date"),
            "OutId": m.meta.get("out_id", ""),
            "BizId": m.provider_id,
        }
        for m in rows[(page - 1) * size : page * size]
    ]
    return answer(
        "OK", "OK", TotalCount=str(len(rows)), SmsSendDetailDTOs={"SmsSendDetailDTO": dtos}
    )
