"""A small client for the sandbox's /_sandbox API, for tests and the demo."""

from __future__ import annotations

from typing import Any

import httpx


class SandboxClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def _json(self, resp: httpx.Response) -> Any:
        resp.raise_for_status()
        return resp.json()

    def messages(
        self, channel: str | None = None, customer: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        params = {
            k: v
            for k, v in {"channel": channel, "customer": customer, "status": status}.items()
            if v
        }
        return list(self._json(self._http.get("/_sandbox/messages", params=params))["messages"])

    def stats(self) -> dict[str, Any]:
        return dict(self._json(self._http.get("/_sandbox/stats")))

    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        params = {"endpoint": endpoint} if endpoint else {}
        return list(self._json(self._http.get("/_sandbox/calls", params=params))["calls"])

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        """Replace the fault configuration, e.g.
        ``set_faults(seed=1, rules=[{"endpoint": "sms.*", "kind": "http", "status": 500,
        "rate": 0.2}])``. Knobs not given return to their defaults."""
        return dict(self._json(self._http.post("/_sandbox/faults", json=knobs)))

    def reset(self) -> None:
        self._json(self._http.post("/_sandbox/reset"))

    def expire_tokens(self) -> None:
        self._json(self._http.post("/_sandbox/tokens/expire"))

    def confirm_wecom(
        self, msgid: str | None = None, sender: str | None = None
    ) -> list[dict[str, Any]]:
        body = {k: v for k, v in {"msgid": msgid, "sender": sender}.items() if v}
        return list(self._json(self._http.post("/_sandbox/wecom/confirm", json=body))["confirmed"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
