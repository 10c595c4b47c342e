"""WeCom (企业微信) API client: ``gettoken``, token replay, and errcode translation.

Every call goes through :meth:`WeComApi.call`, the WeCom seam: HTTP-level failures are mapped by
http_client, errcodes by :func:`siyu.channels.errors.classify_wecom`. Token-expired codes trigger
one single-flight refresh and one replay; a second rejection is a CONFIG fault.
"""

from __future__ import annotations

from typing import Any

from siyu.channels.errors import Action, classify_wecom
from siyu.channels.http_client import ProviderHttp, decode_json
from siyu.channels.secrets import Secret
from siyu.channels.tokens import TokenCache


class WeComApi:
    def __init__(self, http: ProviderHttp, corpid: str, secret: Secret, cache: TokenCache) -> None:
        self.http = http
        self.corpid = corpid
        self._secret = secret
        self._cache = cache

    def _fetch_token(self) -> tuple[str, float]:
        resp = self.http.request(
            "GET",
            "/cgi-bin/gettoken",
            params={"corpid": self.corpid, "corpsecret": self._secret.reveal()},
        )
        data = decode_json(resp)
        errcode = int(data.get("errcode", 0))
        if errcode != 0:
            fault = classify_wecom(errcode, str(data.get("errmsg", "")))
            if fault.action is Action.REFRESH:  # 40001 on gettoken = the secret itself is wrong
                fault.action = Action.CONFIG
            raise fault
        return str(data["access_token"]), float(data.get("expires_in", 7200))

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path``; the parsed answer on errcode 0, else a classified fault."""
        token = self._cache.get(self._fetch_token)
        for replay in (False, True):
            resp = self.http.request("POST", path, params={"access_token": token}, json=body)
            data = decode_json(resp)
            errcode = int(data.get("errcode", 0))
            if errcode == 0:
                return data
            fault = classify_wecom(errcode, str(data.get("errmsg", "")))
            if fault.action is Action.REFRESH and not replay:
                token = self._cache.invalidate(token, self._fetch_token)
                continue
            if fault.action is Action.REFRESH:
                fault.action = Action.CONFIG  # a fresh token was rejected too: the secret is bad
            raise fault
        raise AssertionError("unreachable")  # pragma: no cover

    def __repr__(self) -> str:
        return f"WeComApi(corpid={self.corpid!r}, secret={self._secret!r})"
