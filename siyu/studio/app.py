"""The studio's web app (Starlette, which the stack already has through Prefect): the
journeys at a glance, and one journey's page with its editor. A page is addressed by a
journey file's name as journeys/ lists it; a path is never built from the request. The only
writes are a journey's save (siyu.studio.editing), from the studio's own page
(siyu.studio.security)."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from siyu.project import Project
from siyu.studio.edit_routes import edit_routes
from siyu.studio.journey_view import find_journey_file, view_on_disk
from siyu.studio.overview import journey_files
from siyu.studio.pages import index_page, journey_page, language
from siyu.studio.security import HostGuard, WriteGuard

# A page may never be framed by another site, nor load anything from elsewhere; its only
# script is the studio's own file, which talks only to the studio.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


def create_app(root: Path, database_url: str | None) -> Starlette:
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
            return HTMLResponse("no such journey file", status_code=404, headers=HEADERS)
        view = await run_in_threadpool(view_on_disk, current, path, database_url)
        return HTMLResponse(journey_page(view, lang, guard.token), headers=HEADERS)

    guard = WriteGuard()
    return Starlette(
        routes=[
            Route("/", index),
            Route("/journeys/{key}", journey),
            *edit_routes(project, database_url, guard, HEADERS),
        ],
        middleware=[Middleware(HostGuard)],
    )
