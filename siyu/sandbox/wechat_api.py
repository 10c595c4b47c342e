"""Emulated WeChat endpoints: token, stable_token, 服务号 template send (client_msg_id dedup for
10 minutes) and mini-program subscribe send (no idempotency, like the real API)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from siyu.channels.secrets import SANDBOX_DEV_SECRETS
from siyu.sandbox.gateway import json_response, provider_call, read_json, weixin_error
from siyu.sandbox.state import SandboxState
from siyu.sandbox.wecom_api import render_error, render_invalid

CLIENT_MSG_ID_WINDOW = 600.0


def data_problem(body: dict[str, Any]) -> str | None:
    """What is wrong with a template message's ``data`` ({"key": {"value": "..."}}), if any."""
    data = body.get("data")
    if not isinstance(data, dict):
        return "data invalid"
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, str | int | float):
            return f"data.{key}.value invalid"
    return None


def routes(state: SandboxState) -> list[Route]:
    def endpoint(name: str, path: str, fn: Any, methods: list[str]) -> Route:
        async def view(request: Request) -> Response:
            return await provider_call(
                state, f"wechat.{name}", request, fn, render_error, render_invalid
            )

        return Route(path, view, methods=methods)

    def issue(appid: str, stable: bool) -> Response:
        ttl = state.faults.config.token_ttl
        with state.lock:
            current = state.stable_tokens.get(appid) if stable else None
            if current is None or state.token_error("wechat", current) is not None:
                current = state.issue_token("wechat", appid, ttl)
                if stable:
                    state.stable_tokens[appid] = current
            expires = state.tokens[current][2] - time.time()
        return json_response({"access_token": current, "expires_in": int(max(1, expires))})

    async def token(request: Request) -> Response:
        q = request.query_params
        if q.get("secret") != SANDBOX_DEV_SECRETS["wechat"] or not q.get("appid"):
            return weixin_error(40125, "invalid appsecret")
        return issue(q["appid"], stable=False)

    async def stable_token(request: Request) -> Response:
        body = await read_json(request) or {}
        if body.get("secret") != SANDBOX_DEV_SECRETS["wechat"] or not body.get("appid"):
            return weixin_error(40125, "invalid appsecret")
        return issue(str(body["appid"]), stable=not body.get("force_refresh"))

    async def authed(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        body = await read_json(request)
        with state.lock:
            state.count_api_call()
            err = state.token_error("wechat", request.query_params.get("access_token"))
        if err is not None:
            return None, weixin_error(
                err,
                {42001: "access_token expired"}.get(
                    err, "invalid credential, access_token is invalid or not latest"
                ),
            )
        if body is None:
            return None, weixin_error(47001, "data format error")
        return body, None

    def content_of(body: dict[str, Any]) -> str:
        data = body.get("data") or {}
        return " | ".join(
            f"{k}: {v.get('value', '') if isinstance(v, dict) else v}" for k, v in data.items()
        )

    async def template_send(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        openid = str(body.get("touser") or "")
        if not body.get("template_id"):
            return weixin_error(40037, "invalid template_id")
        problem = data_problem(body)
        if problem:
            return weixin_error(47003, f"argument invalid! {problem}")
        cmid = body.get("client_msg_id") or ""
        if not isinstance(cmid, str):
            return weixin_error(40058, "invalid client_msg_id")
        with state.lock:
            if not openid or state.faults.invalid("service_account", openid):
                return weixin_error(40003, "invalid openid")
            if state.faults.refuses("service_account", openid):
                return weixin_error(43004, "require subscribe")
            scope = ("wechat.client_msg_id", f"{openid}|{cmid}")
            seen = state.idempotency.get(scope) if cmid else None
            if seen and time.time() - seen["at"] < CLIENT_MSG_ID_WINDOW:
                state.note_dedup("service_account", cmid)
                return json_response({"errcode": 0, "errmsg": "ok", "msgid": seen["msgid"]})
            msgid = state.next_provider_id()
            key = cmid or hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            state.record(
                "service_account",
                "template_send",
                openid,
                content_of(body),
                key=key,
                provider_id=str(msgid),
                template_id=body["template_id"],
                url=body.get("url"),
            )
            if cmid:
                state.idempotency[scope] = {"at": time.time(), "msgid": msgid}
        return json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def subscribe_send(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        openid = str(body.get("touser") or "")
        if not body.get("template_id"):
            return weixin_error(40037, "invalid template_id")
        problem = data_problem(body)
        if problem:
            return weixin_error(47003, f"argument invalid! {problem}")
        with state.lock:
            if not openid or state.faults.invalid("miniprogram", openid):
                return weixin_error(40003, "invalid openid")
            if state.faults.refuses("miniprogram", openid):
                return weixin_error(43101, "user refuse to accept the msg")
            msgid = state.next_provider_id()
            key = hashlib.sha256(
                json.dumps([openid, body["template_id"], body["data"]], sort_keys=True).encode()
            ).hexdigest()[:24]
            state.record(
                "miniprogram",
                "subscribe_send",
                openid,
                content_of(body),
                key=key,
                provider_id=str(msgid),
                template_id=body["template_id"],
                page=body.get("page"),
            )
        return json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    return [
        endpoint("token", "/cgi-bin/token", token, ["GET"]),
        endpoint("stable_token", "/cgi-bin/stable_token", stable_token, ["POST"]),
        endpoint("template_send", "/cgi-bin/message/template/send", template_send, ["POST"]),
        endpoint("subscribe_send", "/cgi-bin/message/subscribe/send", subscribe_send, ["POST"]),
    ]
