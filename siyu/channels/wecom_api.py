"""WeCom (企业微信) API client: ``gettoken``, token replay, and errcode translation.

Every call goes through :meth:`WeComApi.call`, the WeCom seam: HTTP-level failures are mapped by
http_client, errcodes by :func:`siyu.channels.errors.classify_wecom`. Token-expired codes trigger
one single-flight refresh and one replay; a second rejection is a CONFIG fault.
"""

from __future__ import annotations

from typing import Any

from siyu.channels.errors import classify_wecom
from siyu.channels.http_client import ProviderHttp, decode_json
from siyu.channels.secrets import Secret
from siyu.channels.token_api import TokenApi
from siyu.channels.tokens import TokenCache


class WeComApi(TokenApi):
    classify = staticmethod(classify_wecom)

    def __init__(self, http: ProviderHttp, corpid: str, secret: Secret, cache: TokenCache) -> None:
        super().__init__(http, secret, cache)
        self.corpid = corpid

    def _token_request(self) -> dict[str, Any]:
        resp = self.http.request(
            "GET",
            "/cgi-bin/gettoken",
            params={"corpid": self.corpid, "corpsecret": self._secret.reveal()},
            # not a message call: it runs once per token lifetime for the fleet, under the
            # token row's lock (siyu/channels/token_store.py), where booking the channel's
            # rate limit in the database would wait on that very lock
            rate_limited=False,
        )
        return decode_json(resp)

    def __repr__(self) -> str:
        return f"WeComApi(corpid={self.corpid!r}, secret={self._secret!r})"
