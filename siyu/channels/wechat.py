"""WeChat 服务号 template messages (``service_account``) and mini-program subscribe messages
(``miniprogram``).

Tokens come from ``/cgi-bin/stable_token`` (safe for many workers: it does not rotate a valid
token). Template sends carry ``client_msg_id`` = the idempotency key, so the provider itself
drops a replay (10 min window). Subscribe sends have no idempotency; a one-time subscription is
consumed by the first successful send, so a replay after a lost answer is answered 43101 rather
than delivered twice (long-term subscriptions do not have that guard: see docs/channels.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from siyu.channels.adapter import BatchChannel, Runtime, Unit
from siyu.channels.base import OutboundMessage, Receipt
from siyu.channels.config import MiniprogramConfig, ServiceAccountConfig
from siyu.channels.errors import classify_wechat
from siyu.channels.http_client import ProviderHttp, decode_json
from siyu.channels.secrets import Secret
from siyu.channels.token_api import TokenApi
from siyu.channels.tokens import TokenCache

CLIENT_MSG_ID_MAX = 64


class WeChatApi(TokenApi):
    """The WeChat seam: stable_token, one replay on token codes, errcode classification."""

    classify = staticmethod(classify_wechat)

    def __init__(self, http: ProviderHttp, appid: str, secret: Secret, cache: TokenCache) -> None:
        super().__init__(http, secret, cache)
        self.appid = appid

    def _token_request(self) -> dict[str, Any]:
        # POST body, not query string: the secret never lands in a URL or an access log.
        resp = self.http.request(
            "POST",
            "/cgi-bin/stable_token",
            json={
                "grant_type": "client_credential",
                "appid": self.appid,
                "secret": self._secret.reveal(),
                "force_refresh": False,
            },
            # not a message call: it runs once per token lifetime for the fleet, under the
            # token row's lock (siyu/channels/token_store.py), where booking the channel's
            # rate limit in the database would wait on that very lock
            rate_limited=False,
        )
        return decode_json(resp)

    def __repr__(self) -> str:
        return f"WeChatApi(appid={self.appid!r}, secret={self._secret!r})"


def client_msg_id(key: str) -> str:
    """The idempotency key, shortened deterministically if WeChat would reject its length."""
    if len(key) <= CLIENT_MSG_ID_MAX:
        return key
    return "h" + hashlib.sha256(key.encode()).hexdigest()[:40]


def template_data(m: OutboundMessage, field: str) -> dict[str, Any]:
    data: dict[str, Any] = {field: {"value": m.body}}
    extra = m.params.get("data")
    if isinstance(extra, dict):  # step-level extra fields: {"time2": "2025-01-01"}
        data.update({k: v if isinstance(v, dict) else {"value": str(v)} for k, v in extra.items()})
    return data


class ServiceAccountChannel(BatchChannel):
    identity_kind = "wechat_openid"
    max_batch = 500
    idempotent = True  # client_msg_id

    def __init__(
        self, name: str, runtime: Runtime, config: ServiceAccountConfig, api: WeChatApi
    ) -> None:
        super().__init__(name, runtime)
        self.config = config
        self.api = api

    def deliver(self, unit: Unit) -> list[Receipt]:
        (m,) = unit
        body: dict[str, Any] = {
            "touser": m.address,
            "template_id": str(m.params.get("template_id") or self.config.template_id),
            "client_msg_id": client_msg_id(m.idempotency_key),
            "data": template_data(m, str(m.params.get("data_field") or self.config.data_field)),
        }
        url = m.params.get("url") or self.config.url
        if url:
            body["url"] = str(url)
        data = self.api.call("/cgi-bin/message/template/send", body)
        return [Receipt(m.idempotency_key, "sent", provider_message_id=str(data.get("msgid", "")))]


class MiniprogramChannel(BatchChannel):
    identity_kind = "miniprogram_openid"
    max_batch = 500
    idempotent = True  # see module docstring: one-time subscriptions cannot deliver twice

    def __init__(
        self, name: str, runtime: Runtime, config: MiniprogramConfig, api: WeChatApi
    ) -> None:
        super().__init__(name, runtime)
        self.config = config
        self.api = api

    def deliver(self, unit: Unit) -> list[Receipt]:
        (m,) = unit
        body: dict[str, Any] = {
            "touser": m.address,
            "template_id": str(m.params.get("template_id") or self.config.template_id),
            "miniprogram_state": self.config.miniprogram_state,
            "lang": self.config.lang,
            "data": template_data(m, str(m.params.get("data_field") or self.config.data_field)),
        }
        page = m.params.get("page") or m.params.get("url") or self.config.page
        if page:
            body["page"] = str(page)
        data = self.api.call("/cgi-bin/message/subscribe/send", body)
        return [Receipt(m.idempotency_key, "sent", provider_message_id=str(data.get("msgid", "")))]
