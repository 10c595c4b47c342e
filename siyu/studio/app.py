"""The studio's web app (Starlette, which the stack already has through Prefect): the
journeys at a glance, one journey's page, a customer's story. Read-only. A page is addressed
by a journey file's name as journeys/ lists it; a path is never built from the request. Who
may ask: siyu.studio.access."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from siyu.language.project_files import Refused, read_source
from siyu.project import Project
from siyu.studio.access import Access, AccessMiddleware
from siyu.studio.overview import journey_files
from siyu.studio.pages import index_page, journey_page, language
from siyu.studio.story import Lookup, look_up
from siyu.studio.story_page import story_page

# A page may never be framed by another site, nor load anything from elsewhere.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


def create_app(root: Path, database_url: str | None, access: Access | None = None) -> Starlette:
    """`access`: who may ask (the CLI always gives it); None serves whoever asks (tests in
    process)."""

    def project() -> Project:
        return Project.find(root)  # each request sees the files as they are now

    async def index(request: Request) -> HTMLResponse:
        files = journey_files(project(), database_url)
        lang = language(request.query_params.get("lang"))
        return HTMLResponse(index_page(files, lang), headers=HEADERS)

    async def journey(request: Request) -> HTMLResponse:
        current = project()
        key = request.path_params["key"]
        entry = next((f for f in journey_files(current, database_url) if f.key == key), None)
        lang = language(request.query_params.get("lang"))
        if entry is None:
            return HTMLResponse("no such journey file", status_code=404, headers=HEADERS)
        try:
            source = read_source(current.journeys_dir, entry.path)
        except Refused as refused:
            source = f"# {refused.message}"
        return HTMLResponse(journey_page(entry, source, lang), headers=HEADERS)

    async def customers(request: Request) -> HTMLResponse:
        lang = language(request.query_params.get("lang"))
        query = request.query_params.get("q", "")
        given = request.query_params.get("id", "")
        customer_id = int(given) if given.isdigit() and len(given) < 19 else None
        if not query.strip() and customer_id is None:
            return HTMLResponse(story_page(Lookup(query), lang), headers=HEADERS)
        found = look_up(database_url, query, customer_id, datetime.now(UTC))
        status = 404 if found.problem == "unknown" else 200
        return HTMLResponse(story_page(found, lang), status_code=status, headers=HEADERS)

    middleware = [] if access is None else [Middleware(AccessMiddleware, access, HEADERS)]
    return Starlette(
        routes=[
            Route("/", index),
            Route("/journeys/{key}", journey),
            Route("/customers", customers),
        ],
        middleware=middleware,
    )
