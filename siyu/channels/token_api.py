"""The seam shared by WeCom and WeChat: an ``access_token`` fetched and cached per app, every
call made with it, errcodes classified, and one single-flight refresh plus one replay on the
token-expired codes. A second rejection means the secret itself is wrong: a CONFIG fault.

Subclasses say how a token is fetched and which error table applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from siyu.channels.errors import Action, ApiFault
from siyu.channels.http_client import ProviderHttp, decode_json
from siyu.channels.secrets import Secret
from siyu.channels.tokens import TokenCache

Classify = Callable[[int, str], ApiFault]


class TokenApi:
    classify: Classify  # the provider's errcode table

    def __init__(self, http: ProviderHttp, secret: Secret, cache: TokenCache) -> None:
        self.http = http
        self._secret = secret
        self._cache = cache

    def _token_request(self) -> dict[str, Any]:
        """Ask the provider for a token; the parsed answer."""
        raise NotImplementedError

    def _fetch_token(self) -> tuple[str, float]:
        data = self._token_request()
        errcode = int(data.get("errcode", 0))
        if errcode != 0:
            fault = type(self).classify(errcode, str(data.get("errmsg", "")))
            if fault.action is Action.REFRESH:  # on the token call: the secret itself is wrong
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
            fault = type(self).classify(errcode, str(data.get("errmsg", "")))
            if fault.action is Action.REFRESH and not replay:
                token = self._cache.invalidate(token, self._fetch_token)
                continue
            if fault.action is Action.REFRESH:
                fault.action = Action.CONFIG  # a fresh token was rejected too: the secret is bad
            raise fault
        raise AssertionError("unreachable")  # pragma: no cover
