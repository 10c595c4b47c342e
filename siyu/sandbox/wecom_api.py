"""Emulated WeCom (企业微信) endpoints: gettoken, add_msg_template and its follow-ups,
groupchat join ways, and message/send with enable_duplicate_check."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from siyu.channels.secrets import SANDBOX_DEV_SECRETS
from siyu.sandbox.faults import FaultRule
from siyu.sandbox.gateway import json_response, provider_call, read_json, weixin_error
from siyu.sandbox.state import SandboxState, WeComTask

MAX_TEXT_BYTES = 4000
MAX_EXTERNAL_USERIDS = 10_000
MAX_ATTACHMENTS = 9
# Required fields per attachment type (doc path/92135); image takes media_id or pic_url.
_ATTACHMENT_FIELDS: dict[str, tuple[str, ...]] = {
    "image": (),
    "link": ("title", "url"),
    "miniprogram": ("title", "pic_media_id", "appid", "page"),
    "video": ("media_id",),
    "file": ("media_id",),
}
# The older format wechatpy documents: one top-level image/link/miniprogram, taken in this order.
_LEGACY_TYPES = ("image", "link", "miniprogram")


def read_attachments(body: dict[str, Any]) -> list[dict[str, Any]] | str:
    """The message's attachments in the current format (a legacy top-level image / link /
    miniprogram becomes one), or what is wrong with them."""
    attachments = body.get("attachments")
    if attachments is None:
        attachments = []
        for legacy in _LEGACY_TYPES:
            if body.get(legacy):
                attachments = [{"msgtype": legacy, legacy: body[legacy]}]
                break
    if not isinstance(attachments, list):
        return "attachments must be a list"
    if len(attachments) > MAX_ATTACHMENTS:
        return f"at most {MAX_ATTACHMENTS} attachments"
    for i, item in enumerate(attachments):
        kind = item.get("msgtype") if isinstance(item, dict) else None
        if kind not in _ATTACHMENT_FIELDS:
            return f"attachments[{i}].msgtype invalid"
        content = item.get(kind)
        if not isinstance(content, dict):
            return f"attachments[{i}].{kind} missing"
        missing = [f for f in _ATTACHMENT_FIELDS[kind] if not isinstance(content.get(f), str)]
        if kind == "image" and not (content.get("media_id") or content.get("pic_url")):
            missing.append("media_id")
        if missing:
            return f"attachments[{i}].{kind}.{missing[0]} missing"
    return attachments


def render_error(rule: FaultRule) -> Response:
    if rule.status and rule.status != 200:
        return Response("sandbox injected error", status_code=rule.status)
    code = int(rule.code if rule.code is not None else -1)
    return weixin_error(code, "system busy" if code == -1 else "sandbox injected error")


def render_invalid(message: str) -> Response:
    return weixin_error(40058, message)  # 不合法的参数


def routes(state: SandboxState) -> list[Route]:
    def endpoint(name: str, fn: Any, methods: list[str]) -> Route:
        async def view(request: Request) -> Response:
            return await provider_call(
                state, f"wecom.{name}", request, fn, render_error, render_invalid
            )

        return Route(f"/cgi-bin/{_PATHS[name]}", view, methods=methods)

    async def gettoken(request: Request) -> Response:
        corpid = request.query_params.get("corpid", "")
        if request.query_params.get("corpsecret") != SANDBOX_DEV_SECRETS["wecom"] or not corpid:
            return weixin_error(40001, "invalid credential")
        with state.lock:
            token = state.issue_token("wecom", corpid, state.faults.config.token_ttl)
        return json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "access_token": token,
                "expires_in": int(state.faults.config.token_ttl),
            }
        )

    async def authed(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        body = await read_json(request)
        with state.lock:
            state.count_api_call()
            err = state.token_error("wecom", request.query_params.get("access_token"))
        if err is not None:
            return None, weixin_error(
                err,
                {41001: "access_token missing", 42001: "access_token expired"}.get(
                    err, "invalid access_token"
                ),
            )
        if body is None:
            return None, weixin_error(47001, "data format error")
        return body, None

    async def add_msg_template(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        if body.get("chat_type", "single") != "single":
            return weixin_error(40058, "sandbox only emulates chat_type=single")
        ids = body.get("external_userid") or []
        text = body.get("text") or {}
        sender = body.get("sender") or ""
        if (
            not isinstance(ids, list)
            or not ids
            or len(ids) > MAX_EXTERNAL_USERIDS
            or not all(isinstance(i, str) and i for i in ids)
        ):
            return weixin_error(40058, "external_userid must hold 1..10000 ids")
        if not isinstance(sender, str) or not sender:
            return weixin_error(40003, "invalid userid (sender)")
        if not isinstance(text, dict) or not isinstance(text.get("content", ""), str):
            return weixin_error(40058, "text.content must be a string")
        attachments = read_attachments(body)
        if isinstance(attachments, str):
            return weixin_error(40058, attachments)
        content = text.get("content", "")
        if not content and not attachments:
            return weixin_error(44004, "empty content")
        if len(content.encode()) > MAX_TEXT_BYTES:
            return weixin_error(45002, "content size out of limit")
        with state.lock:
            fail = [i for i in ids if state.faults.invalid("wecom", str(i))]
            ok = [i for i in ids if i not in fail]
            if not ok:
                return json_response(
                    {
                        "errcode": 40096,
                        "errmsg": "invalid external userid, hint: [sandbox]",
                        "fail_list": [],
                    }
                )
            msgid = f"msg{secrets.token_hex(12)}"
            task = WeComTask(msgid, sender, ok, text, attachments, int(time.time()))
            for euid in ok:
                digest = hashlib.sha256(json.dumps([content, attachments]).encode()).hexdigest()
                msg = state.record(
                    "wecom",
                    "add_msg_template",
                    euid,
                    content,
                    key=f"{euid}|{digest[:16]}",
                    status="pending",
                    provider_id=msgid,
                    sender=sender,
                    attachments=attachments,
                )
                task.message_ids[euid] = msg.id
            state.tasks[msgid] = task
            if state.faults.config.auto_confirm:
                state.confirm_task(task)
        return json_response({"errcode": 0, "errmsg": "ok", "fail_list": fail, "msgid": msgid})

    async def get_groupmsg_task(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        with state.lock:
            task = state.tasks.get(str(body.get("msgid")))
            if task is None:
                return weixin_error(41063, "msgid not found")
            row = {"userid": task.sender, "status": 2 if task.confirmed else 0}
            if task.confirmed:
                row["send_time"] = task.send_time
        return json_response({"errcode": 0, "errmsg": "ok", "next_cursor": "", "task_list": [row]})

    async def get_groupmsg_send_result(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        limit = min(int(body.get("limit") or 500), 1000)
        offset = int(body.get("cursor") or 0)
        with state.lock:
            task = state.tasks.get(str(body.get("msgid")))
            if task is None or body.get("userid") != task.sender:
                return weixin_error(41063, "msgid/userid not found")
            rows = [
                {
                    "external_userid": e,
                    "chat_id": "",
                    "userid": task.sender,
                    "status": task.results.get(e, 0),
                    **({"send_time": task.send_time} if task.results.get(e) == 1 else {}),
                }
                for e in task.external_userids
            ]
        page = rows[offset : offset + limit]
        cursor = str(offset + limit) if offset + limit < len(rows) else ""
        return json_response(
            {"errcode": 0, "errmsg": "ok", "next_cursor": cursor, "send_list": page}
        )

    async def get_groupmsg_list_v2(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        start, end = int(body.get("start_time") or 0), int(body.get("end_time") or 2**31)
        with state.lock:
            rows = [
                {
                    "msgid": t.msgid,
                    "creator": t.sender,
                    "create_time": t.create_time,
                    "create_type": 0,
                    "text": t.text,
                    "attachments": t.attachments,
                }
                for t in state.tasks.values()
                if start <= t.create_time <= end
            ]
        return json_response(
            {"errcode": 0, "errmsg": "ok", "next_cursor": "", "group_msg_list": rows}
        )

    async def add_join_way(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        chats = body.get("chat_id_list") or []
        if body.get("scene") not in (1, 2) or not chats or len(chats) > 5:
            return weixin_error(40058, "scene must be 1|2 and chat_id_list 1..5 ids")
        config_id = secrets.token_hex(16)
        qr = f"{str(request.base_url).rstrip('/')}/_sandbox/join/{config_id}"
        with state.lock:
            state.join_ways[config_id] = {**body, "config_id": config_id, "qr_code": qr}
        return json_response({"errcode": 0, "errmsg": "ok", "config_id": config_id})

    async def get_join_way(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        with state.lock:
            way = state.join_ways.get(str(body.get("config_id")))
        if way is None:
            return weixin_error(41044, "config_id not found")
        return json_response({"errcode": 0, "errmsg": "ok", "join_way": way})

    async def message_send(request: Request) -> Response:
        body, error = await authed(request)
        if error is not None or body is None:
            return error or weixin_error(47001, "data format error")
        users = [u for u in str(body.get("touser") or "").split("|") if u]
        text = body.get("text") or {}
        content = text.get("content", "") if isinstance(text, dict) else ""
        if not isinstance(content, str) or not content:
            return weixin_error(44004, "empty content")
        if not isinstance(body.get("agentid"), int):
            return weixin_error(40056, "invalid agentid")
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
        interval = int(body.get("duplicate_check_interval") or 1800)
        with state.lock:
            invalid = [u for u in users if state.faults.invalid("wecom_staff", u)]
            valid = [u for u in users if u not in invalid]
            if not valid:
                return weixin_error(81013, "user & party & tag all invalid")
            scope = ("wecom.message_send", hashlib.sha256(canonical.encode()).hexdigest())
            seen = state.idempotency.get(scope)
            if (
                body.get("enable_duplicate_check") == 1
                and seen
                and time.time() - seen["at"] < interval
            ):
                for u in valid:
                    state.note_dedup("wecom_staff", f"{u}|{scope[1][:16]}")
                msgid = seen["msgid"]
            else:
                msgid = secrets.token_hex(16)
                state.idempotency[scope] = {"at": time.time(), "msgid": msgid}
                for u in valid:
                    state.record(
                        "wecom_staff",
                        "message_send",
                        u,
                        content,
                        key=f"{u}|{scope[1][:16]}",
                        provider_id=msgid,
                    )
        return json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "invaliduser": "|".join(invalid),
                "invalidparty": "",
                "invalidtag": "",
                "msgid": msgid,
            }
        )

    return [
        endpoint("gettoken", gettoken, ["GET"]),
        endpoint("add_msg_template", add_msg_template, ["POST"]),
        endpoint("get_groupmsg_task", get_groupmsg_task, ["POST"]),
        endpoint("get_groupmsg_send_result", get_groupmsg_send_result, ["POST"]),
        endpoint("get_groupmsg_list_v2", get_groupmsg_list_v2, ["POST"]),
        endpoint("add_join_way", add_join_way, ["POST"]),
        endpoint("get_join_way", get_join_way, ["POST"]),
        endpoint("message_send", message_send, ["POST"]),
    ]


_PATHS = {
    "gettoken": "gettoken",
    "add_msg_template": "externalcontact/add_msg_template",
    "get_groupmsg_task": "externalcontact/get_groupmsg_task",
    "get_groupmsg_send_result": "externalcontact/get_groupmsg_send_result",
    "get_groupmsg_list_v2": "externalcontact/get_groupmsg_list_v2",
    "add_join_way": "externalcontact/groupchat/add_join_way",
    "get_join_way": "externalcontact/groupchat/get_join_way",
    "message_send": "message/send",
}
