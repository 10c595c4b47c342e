"""The studio's web app (Starlette, which the stack already has through Prefect): the
journeys at a glance, one journey's page with its editor, a customer's story and a
backtest's page. A page is addressed by a journey file's name as journeys/ lists it; a path
is never built from the request. Who may ask: siyu.studio.access. The only writes are a
journey's save (siyu.studio.editing, from the studio's own page: siyu.studio.security) and a
backtest's scratch copy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from siyu.project import Project
from siyu.studio.access import Access, AccessMiddleware
from siyu.studio.backtest import Backtests
from siyu.studio.backtest_page import MAX_DAYS, backtest_form, backtest_page
from siyu.studio.edit_routes import bounded_body, edit_routes
from siyu.studio.journey_view import find_journey_file, view_on_disk
from siyu.studio.overview import journey_files
from siyu.studio.pages import LABELS, index_page, journey_page, language
from siyu.studio.security import WriteGuard
from siyu.studio.story import Lookup, look_up
from siyu.studio.story_page import story_page

# A page may never be framed by another site, nor load anything from elsewhere; its only
# script is the studio's own file, which talks only to the studio; its forms (the customer
# search, the backtest) submit only to the studio.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


def create_app(root: Path, database_url: str | None, access: Access | None = None) -> Starlette:
    """`access`: who may ask (the CLI always gives it); None serves whoever asks (tests in
    process)."""
    backtests = Backtests(database_url)

    def project() -> Project:
        return Project.find(root)  # each request sees the files as they are now

    async def index(request: Request) -> HTMLResponse:
        files = journey_files(project(), database_url)
        lang = language(request.query_params.get("lang"))
        return HTMLResponse(index_page(files, lang), headers=HEADERS)

    async def journey(request: Request) -> HTMLResponse:
        current = project()
        path = find_journey_file(current, request.path_params["key"])
        lang = language(request.query_params.get("lang"))
        if path is None:
            return HTMLResponse(LABELS[lang]["no_such_file"], status_code=404, headers=HEADERS)
        view = await run_in_threadpool(view_on_disk, current, path, database_url)
        form = backtest_form(path.stem, lang) if view.entry.valid else ""
        return HTMLResponse(journey_page(view, lang, guard.token, form), headers=HEADERS)

    async def customers(request: Request) -> HTMLResponse:
        lang = language(request.query_params.get("lang"))
        query = request.query_params.get("q", "")
        given = request.query_params.get("id", "")
        customer_id = int(given) if given.isdigit() and len(given) < 19 else None
        if not query.strip() and customer_id is None:
            return HTMLResponse(story_page(Lookup(query), lang), headers=HEADERS)
        found = look_up(database_url, query, customer_id, datetime.now(UTC), lang)
        status = 404 if found.problem == "unknown" else 200
        return HTMLResponse(story_page(found, lang), status_code=status, headers=HEADERS)

    async def start_backtest(request: Request) -> Response:
        current = project()
        key = request.path_params["key"]
        lang = language(request.query_params.get("lang"))
        path = find_journey_file(current, key)
        t = LABELS[lang]
        if path is None:
            return HTMLResponse(t["no_such_file"], status_code=404, headers=HEADERS)
        body = await bounded_body(request)
        if body is None:
            return HTMLResponse(t["form_too_large"], status_code=413, headers=HEADERS)
        form = parse_qs(body.decode("utf-8", "replace"))
        days = (form.get("days") or [""])[0].strip()
        # the editor's text, when the script sent it (a form sends its newlines as CRLF)
        edited = (form.get("text") or [""])[0].replace("\r\n", "\n") or None
        if not days.isdigit() or not 1 <= int(days) <= MAX_DAYS:
            said = t["days_range"].format(max=MAX_DAYS)
            return HTMLResponse(said, status_code=400, headers=HEADERS)
        run = backtests.start(current, key, path, int(days), edited)
        return RedirectResponse(f"/backtests/{run.id}?lang={lang}", 303, headers=HEADERS)

    async def backtest(request: Request) -> HTMLResponse:
        run = backtests.get(request.path_params["id"])
        lang = language(request.query_params.get("lang"))
        if run is None:
            said = LABELS[lang]["no_such_backtest"]
            return HTMLResponse(said, status_code=404, headers=HEADERS)
        return HTMLResponse(backtest_page(run, lang), headers=HEADERS)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        backtests.stop()  # each removes its scratch copy on the way out

    guard = WriteGuard()
    middleware = [] if access is None else [Middleware(AccessMiddleware, access, HEADERS)]
    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", index),
            Route("/journeys/{key}", journey),
            Route("/journeys/{key}/backtest", start_backtest, methods=["POST"]),
            Route("/backtests/{id}", backtest),
            Route("/customers", customers),
            *edit_routes(project, database_url, guard, HEADERS),
        ],
        middleware=middleware,
    )
