"""The sandbox's own API under ``/_sandbox``: inspect, inject faults, reset, confirm."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from siyu.sandbox.faults import FaultConfig
from siyu.sandbox.gateway import json_response, read_json
from siyu.sandbox.state import SandboxState


def routes(state: SandboxState) -> list[Route]:
    async def messages(request: Request) -> Response:
        q = request.query_params
        with state.lock:
            rows = [
                m.as_dict()
                for m in state.messages
                if (not q.get("channel") or m.channel == q["channel"])
                and (not q.get("customer") or m.customer == q["customer"])
                and (not q.get("status") or m.status == q["status"])
            ]
        return json_response({"messages": rows, "count": len(rows)})

    async def stats(_: Request) -> Response:
        return json_response(state.stats())

    async def calls(request: Request) -> Response:
        endpoint = request.query_params.get("endpoint")
        with state.lock:
            rows = [
                {"endpoint": c.endpoint, "at": c.at, "fault": c.fault}
                for c in state.calls
                if not endpoint or c.endpoint == endpoint
            ]
        return json_response({"calls": rows, "count": len(rows)})

    async def set_faults(request: Request) -> Response:
        body = await read_json(request)
        if body is None:
            return json_response({"error": "body must be a JSON object"}, status=400)
        try:
            config = FaultConfig.model_validate(body)
        except ValidationError as exc:
            return json_response(
                {
                    "error": "invalid fault config",
                    "details": exc.errors(include_url=False, include_input=False),
                },
                status=422,
            )
        state.faults.configure(config)
        return json_response(config.model_dump())

    async def get_faults(_: Request) -> Response:
        return json_response(state.faults.config.model_dump())

    async def reset(_: Request) -> Response:
        state.reset()
        return json_response({"ok": True})

    async def expire_tokens(_: Request) -> Response:
        with state.lock:
            state.expire_tokens()
        return json_response({"ok": True})

    async def confirm(request: Request) -> Response:
        body = await read_json(request) or {}
        with state.lock:
            done = []
            for task in state.tasks.values():
                if task.confirmed:
                    continue
                if body.get("msgid") and task.msgid != body["msgid"]:
                    continue
                if body.get("sender") and task.sender != body["sender"]:
                    continue
                state.confirm_task(task)
                done.append({"msgid": task.msgid, "results": task.results})
        return json_response({"confirmed": done})

    return [
        Route("/_sandbox/messages", messages, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/calls", calls, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST", "PUT"]),
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/_sandbox/wecom/confirm", confirm, methods=["POST"]),
    ]
