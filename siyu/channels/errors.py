"""Provider errors, and the one table per provider that says what each code means.

Every provider signals failure its own way (WeCom/WeChat: HTTP 200 + ``errcode``; Aliyun: ``Code``
in the body or a non-2xx gateway error; SendGrid and webhooks: the HTTP status). Adapters never
interpret codes themselves: they hand the raw signal to ``classify_*`` here, the one seam per
provider, and act on the resulting :class:`Action` (channels.md §7). A test fails if a code that
§7 lists is missing from these tables.

One exception tree for the channels (the engine sees receipts, ChannelUnavailable or
ChannelMisconfigured; a ProviderFault stays inside the adapters)::

    ChannelError (base.py)            the whole channel is unusable now; the engine defers the batch
    ├── ChannelUnavailable (base.py)  transient: the batch is retried later (counted)
    ├── ChannelMisconfigured (base.py) config or credentials refused: the batch is held (uncounted)
    └── ProviderFault                 one provider call failed; its Action says what to do
        ├── TransportFault            no usable HTTP answer (httpx errors, see http_client)
        │   ├── NotSentFault          surely not applied (refused, connect/pool timeout): retry
        │   └── AmbiguousFault        maybe applied (read timeout, dropped after sending):
        │                             reconcile (look it up) before any retry
        ├── ApiFault                  the provider answered with an error code / status: RETRY
        │                             or RATE (retry later), PERM (fail that message), REFUSE,
        │                             CONFIG (hold), ...
        └── ReconcileFailed (adapter.py) the lookup after an ambiguous fault failed: retry later
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from email.utils import parsedate_to_datetime

from siyu.channels.base import ChannelError


class Action(enum.Enum):
    RETRY = "retry"  # transient: bounded exponential backoff with jitter
    RATE = "rate"  # throttled / quota: wait for the window (inline only if short)
    REFRESH = "refresh"  # token invalid/expired: refetch (single-flight) and replay once
    PERM = "perm"  # permanent for this message: outcome `failed`, never retried
    REFUSE = "refuse"  # the customer refused / is unreachable on this channel: `refused`
    CONFIG = "config"  # permanent until ops fixes config: ChannelError / defer the batch
    DONE = "done"  # already handled (duplicate id): treat as sent


class ProviderFault(ChannelError):
    """One failed provider call. ``code`` is the provider's own code, verbatim."""

    def __init__(
        self,
        action: Action,
        code: str,
        detail: str = "",
        *,
        retry_after: float | None = None,
        ambiguous: bool = False,
        auth: bool = False,
    ) -> None:
        # True when the provider refused our credentials (secret, token, key, signature):
        # with action CONFIG the engine holds the messages until an operator fixes them.
        super().__init__(
            None,
            f"{code}: {detail}" if detail else code,
            retryable=action in (Action.RETRY, Action.RATE),
            auth=auth,
            code=code,
        )
        self.action = action
        self.code: str = code
        self.detail = detail
        self.retry_after = retry_after
        # True when the request may have been applied although we got no success answer.
        self.ambiguous = ambiguous


class TransportFault(ProviderFault):
    """No usable HTTP answer."""


class NotSentFault(TransportFault):
    """The request certainly never reached the provider (safe to retry anything)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(Action.RETRY, code, detail, ambiguous=False)


class AmbiguousFault(TransportFault):
    """The request may have been applied (timeout after sending, connection dropped)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(Action.RETRY, code, detail, ambiguous=True)


class ApiFault(ProviderFault):
    """The provider answered with an error."""


# --- WeCom (企业微信) errcode -> action, channels.md §7 ------------------------------------------
WECOM_CODES: dict[int, Action] = {
    -1: Action.RETRY,  # 系统繁忙, "建议重试次数不超过3次"
    6000: Action.RETRY,  # 数据版本冲突
    40014: Action.REFRESH,  # invalid access_token
    42001: Action.REFRESH,  # access_token expired
    # 40001 is "bad secret" in WeCom: refresh once (a replay with a fresh token), then CONFIG.
    40001: Action.REFRESH,
    40091: Action.CONFIG,  # secret is invalid (gettoken)
    40125: Action.CONFIG,  # invalid secret (seen from gettoken with a wrong app secret)
    41001: Action.CONFIG,  # missing access_token: our bug
    45009: Action.RATE,  # api freq out of limit (minute block 60 s)
    45033: Action.RETRY,  # concurrency limit: short jittered delay
    40096: Action.PERM,  # invalid external userid
    84061: Action.REFUSE,  # no external-contact relation (customer deleted us / not a friend)
    41051: Action.DONE,  # welcome message already sent
    81013: Action.PERM,  # all userids invalid
    81017: Action.PERM,  # groupchat/list needs owner_filter: request bug
    48002: Action.CONFIG,  # api has no permission
    60020: Action.CONFIG,  # ip not in whitelist
    40003: Action.CONFIG,  # invalid UserID (sender)
    60111: Action.CONFIG,  # userid not found (sender)
    40007: Action.PERM,  # invalid media_id (expired temp media)
    44004: Action.PERM,  # empty content
    45002: Action.PERM,  # content too long
    40058: Action.PERM,  # bad parameter
    40035: Action.PERM,  # bad parameter
}
WECOM_RATE_WAIT = {45009: 60.0}  # minute block; hour/day blocks show up as repeated 45009
# The credentials were refused: a wrong or revoked secret, or tokens it can no longer get.
WECOM_AUTH = {40001, 40014, 42001, 40091, 40125}

# --- WeChat 服务号 / mini-program errcode -> action ---
WECHAT_CODES: dict[int, Action] = {
    -1: Action.RETRY,
    40001: Action.REFRESH,
    40014: Action.REFRESH,
    42001: Action.REFRESH,
    45009: Action.RATE,  # daily quota reached
    45011: Action.RATE,  # minute quota
    40003: Action.PERM,  # invalid openid
    43004: Action.REFUSE,  # require subscribe (not following)
    43101: Action.REFUSE,  # user refused / subscription used up
    48002: Action.REFUSE,  # user blocked messages
    40037: Action.CONFIG,  # invalid template_id
    40036: Action.PERM,
    47003: Action.PERM,  # template argument invalid (errmsg names the field)
    41030: Action.PERM,  # invalid page
    47001: Action.PERM,  # bad JSON
    48001: Action.CONFIG,  # api unauthorized
    48004: Action.CONFIG,  # api banned
    50002: Action.CONFIG,  # account limited
    40013: Action.CONFIG,  # invalid appid
    40125: Action.CONFIG,  # invalid appsecret
    40164: Action.CONFIG,  # ip not in whitelist
    45065: Action.DONE,  # clientmsgid exists
    45066: Action.RATE,  # same clientmsgid retried < 1 min
}
WECHAT_RATE_WAIT = {45011: 60.0, 45066: 60.0, 45009: 3600.0}
WECHAT_AUTH = {40001, 40014, 42001, 40013, 40125}

# --- Aliyun SMS Code -> action ---
SMS_CODES: dict[str, Action] = {
    "isv.BUSINESS_LIMIT_CONTROL": Action.RATE,
    "isv.DAY_LIMIT_CONTROL": Action.RATE,
    "isv.MONTH_LIMIT_CONTROL": Action.RATE,
    "Throttling": Action.RETRY,
    "Throttling.User": Action.RETRY,
    "isp.SYSTEM_ERROR": Action.RETRY,
    "InternalError": Action.RETRY,
    "UnknownError": Action.RETRY,
    "ServiceUnavailable": Action.RETRY,
    "isv.MOBILE_NUMBER_ILLEGAL": Action.PERM,
    "isv.MOBILE_COUNT_OVER_LIMIT": Action.PERM,
    "isv.TEMPLATE_MISSING_PARAMETERS": Action.PERM,
    "isv.INVALID_PARAMETERS": Action.PERM,
    "isv.INVALID_JSON_PARAM": Action.PERM,
    "isv.PARAM_LENGTH_LIMIT": Action.PERM,
    "isv.PARAM_NOT_SUPPORT_URL": Action.PERM,
    "isv.BLACK_KEY_CONTROL_LIMIT": Action.PERM,
    "isv.SMS_CONTENT_ILLEGAL": Action.PERM,
    "isv.SMS_TEMPLATE_ILLEGAL": Action.CONFIG,
    "isv.SMS_SIGNATURE_ILLEGAL": Action.CONFIG,
    "isv.SMS_SIGN_ILLEGAL": Action.CONFIG,
    "isv.SIGN_STATE_ILLEGAL": Action.CONFIG,
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": Action.CONFIG,
    "isv.AMOUNT_NOT_ENOUGH": Action.CONFIG,
    "isv.OUT_OF_SERVICE": Action.CONFIG,
    "isv.ACCOUNT_ABNORMAL": Action.CONFIG,
    "isv.ACCOUNT_NOT_EXISTS": Action.CONFIG,
    "isv.PRODUCT_UN_SUBSCRIPT": Action.CONFIG,
    "isv.PRODUCT_UNSUBSCRIBE": Action.CONFIG,
    "isp.RAM_PERMISSION_DENY": Action.CONFIG,
    "isv.DENY_IP_RANGE": Action.CONFIG,
    "SignatureDoesNotMatch": Action.CONFIG,
    "InvalidAccessKeyId": Action.CONFIG,
    "InvalidAccessKeyId.NotFound": Action.CONFIG,
    "InvalidAccessKeyId.Inactive": Action.CONFIG,
    "Forbidden.AccessKeyDisabled": Action.CONFIG,
    "IncompleteSignature": Action.CONFIG,
    "InvalidTimeStamp.Expired": Action.CONFIG,  # or clock skew > 15 min
    # The number replied "R"/"TD" and is on the signature's blacklist. Aliyun reports this on the
    # delivery receipt; the sandbox returns it synchronously so the refusal path is testable.
    "isv.RECIPIENT_UNSUBSCRIBED": Action.REFUSE,
}
SMS_AUTH = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "Forbidden.AccessKeyDisabled",
    "IncompleteSignature",
}
_SMS_WINDOW = {"分钟级": 60.0, "小时级": 3600.0, "天级": 86400.0}

# --- HTTP-status providers (SendGrid v3, outbound webhooks) ---------------------------------------
SENDGRID_STATUS: dict[int, Action] = {
    400: Action.PERM,
    413: Action.PERM,
    401: Action.CONFIG,
    403: Action.CONFIG,  # sender identity; "temporarily blocked" is RATE (see classify_sendgrid)
    406: Action.PERM,
    429: Action.RATE,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}
WEBHOOK_STATUS: dict[int, Action] = {
    410: Action.REFUSE,  # Standard Webhooks: endpoint gone (for this customer)
    429: Action.RATE,
    502: Action.RATE,
    504: Action.RATE,
    401: Action.CONFIG,  # signature rejected: secrets differ
    403: Action.CONFIG,
    409: Action.RETRY,  # same Idempotency-Key still in flight
    422: Action.PERM,  # key reused with another payload
}


def classify_wecom(errcode: int, errmsg: str = "") -> ApiFault:
    action = WECOM_CODES.get(errcode, Action.RETRY if errcode < 0 else Action.PERM)
    return ApiFault(
        action,
        str(errcode),
        errmsg,
        retry_after=WECOM_RATE_WAIT.get(errcode),
        auth=errcode in WECOM_AUTH,
    )


def classify_wechat(errcode: int, errmsg: str = "") -> ApiFault:
    action = WECHAT_CODES.get(errcode, Action.RETRY if errcode < 0 else Action.PERM)
    return ApiFault(
        action,
        str(errcode),
        errmsg,
        retry_after=WECHAT_RATE_WAIT.get(errcode),
        auth=errcode in WECHAT_AUTH,
    )


def classify_sms(code: str, message: str = "", *, status: int = 200) -> ApiFault:
    action = SMS_CODES.get(code)
    if action is None:
        # Unknown gateway 5xx are transient; unknown business codes are permanent (stop, look).
        action = Action.RETRY if status >= 500 else Action.PERM
    retry_after = None
    if action is Action.RATE:
        retry_after = 86400.0 if code != "isv.BUSINESS_LIMIT_CONTROL" else 60.0
        for word, seconds in _SMS_WINDOW.items():
            if word in message:
                retry_after = seconds
    # A 5xx or a system error may have sent the SMS: the adapter must check OutId first.
    ambiguous = status >= 500 or code in {"isp.SYSTEM_ERROR", "InternalError", "UnknownError"}
    return ApiFault(
        action, code, message, retry_after=retry_after, ambiguous=ambiguous, auth=code in SMS_AUTH
    )


def _status_action(table: dict[int, Action], status: int) -> Action:
    if status in table:
        return table[status]
    if status >= 500:
        return Action.RETRY
    return Action.PERM


def classify_sendgrid(status: int, message: str = "", retry_after: float | None = None) -> ApiFault:
    action = _status_action(SENDGRID_STATUS, status)
    if status == 403 and "temporarily blocked" in message.lower():
        action = Action.RATE
    return ApiFault(
        action,
        str(status),
        message,
        retry_after=retry_after,
        ambiguous=status >= 500,
        auth=status == 401,  # the API key was refused (403: sender identity, a config fault)
    )


def classify_webhook(status: int, message: str = "", retry_after: float | None = None) -> ApiFault:
    if 300 <= status < 400:
        # Standard Webhooks: a redirect is a failed delivery, retried on the schedule.
        return ApiFault(Action.RETRY, str(status), "redirect is not success", ambiguous=False)
    action = _status_action(WEBHOOK_STATUS, status)
    return ApiFault(
        action,
        str(status),
        message,
        retry_after=retry_after,
        ambiguous=status >= 500,
        auth=status in (401, 403),  # the receiver refused our signature
    )


_RETRY_AFTER_NUM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare here)."""
    if not value:
        return None
    m = _RETRY_AFTER_NUM.match(value)
    if m:
        return float(m.group(1))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
