"""The routes of a journey's editor: its script, the check of a text as the marketer types,
and the save. Both POSTs pass siyu.studio.security's WriteGuard first and read a bounded
JSON body: {"text": ..., "lang": "zh"|"en", "loaded": sha256 of the text the page loaded}."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from siyu.limits import limits
from siyu.project import Project
from siyu.studio.editing import save_journey
from siyu.studio.journey_view import JourneyView, find_journey_file, view_of
from siyu.studio.pages import journey_parts, language, save_message
from siyu.studio.security import WriteGuard


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def bounded_body(request: Request) -> bytes | None:
    """The request's body, read no further than a journey's text could need in it (JSON
    spells a character in up to 6 bytes, \\u0000; a form a byte of UTF-8 in 3, %E4); None
    when it is longer."""
    cap = 6 * limits().journey_bytes + 4096
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > cap:
            return None
    return bytes(data)


async def _body(request: Request) -> dict[str, str]:
    """The request's JSON object of strings (bounded_body)."""
    data = await bounded_body(request)
    if data is None:
        raise BadRequest(413, "the text is too large")
    try:
        parsed = json.loads(data)
    except ValueError:
        raise BadRequest(400, "the request is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("text"), str):
        raise BadRequest(400, "the request has no text")
    return {k: v for k, v in parsed.items() if isinstance(v, str)}


def _answer(view: JourneyView, lang: str, **extra: Any) -> dict[str, Any]:
    checked = view.checked
    return {
        **extra,
        "valid": checked.valid,
        "problems": [
            {
                "file": p.file if not checked.in_file(p) else None,
                "line": p.line,
                "column": p.column,
                "code": p.code,
                "message": p.message,
            }
            for p in checked.problems
        ],
        "parts": journey_parts(view, lang),
    }


def edit_routes(
    project: Callable[[], Project],
    database_url: str | None,
    guard: WriteGuard,
    headers: Mapping[str, str],
) -> list[Route]:
    script = files("siyu.studio").joinpath("static/studio.js").read_text(encoding="utf-8")

    def refused(status: int, message: str) -> JSONResponse:
        return JSONResponse({"ok": False, "message": message}, status, headers=dict(headers))

    async def studio_js(request: Request) -> Response:
        return Response(script, media_type="text/javascript", headers=dict(headers))

    async def admitted(request: Request) -> tuple[Project, Path, dict[str, str]] | JSONResponse:
        """The project, the journey file and the request's body; or the refusal."""
        why = guard.refusal(request)
        if why is not None:
            return refused(403, why)
        current = project()
        path = find_journey_file(current, request.path_params["key"])
        if path is None:
            return refused(404, "no such journey file")
        try:
            return current, path, await _body(request)
        except BadRequest as bad:
            return refused(bad.status, bad.message)

    async def check(request: Request) -> JSONResponse:
        found = await admitted(request)
        if isinstance(found, JSONResponse):
            return found
        current, path, body = found
        lang = language(body.get("lang"))
        view = await run_in_threadpool(view_of, current, path, body["text"], database_url)
        return JSONResponse(_answer(view, lang), headers=dict(headers))

    async def save(request: Request) -> JSONResponse:
        found = await admitted(request)
        if isinstance(found, JSONResponse):
            return found
        current, path, body = found
        lang, text = language(body.get("lang")), body["text"]
        saved = await run_in_threadpool(save_journey, current, path, text, body.get("loaded", ""))
        said = {"ok": saved.ok, "message": save_message(saved, path.name, lang)}
        if saved.checked is None:  # refused before checking: the file, or a newer one on disk
            answer = {**said, "loaded": saved.loaded}
            return JSONResponse(answer, saved.status, headers=dict(headers))
        view = await run_in_threadpool(view_of, current, path, text, database_url)
        answer = _answer(view, lang, **said, loaded=saved.loaded)
        return JSONResponse(answer, saved.status, headers=dict(headers))

    return [
        Route("/static/studio.js", studio_js),
        Route("/journeys/{key}/check", check, methods=["POST"]),
        Route("/journeys/{key}/save", save, methods=["POST"]),
    ]
