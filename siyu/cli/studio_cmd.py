"""`siyu studio`: the journey studio, a local web page of the project's journeys."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from siyu.cli.conventions import cli_command
from siyu.errors import ConfigError

TOKEN_LENGTH = 16  # at least, for SIYU_STUDIO_TOKEN


@cli_command(database=True)
def studio_command(
    port: Annotated[int, typer.Option(help="the port to listen on", min=1, max=65535)] = 8780,
    host: Annotated[
        str,
        typer.Option(
            help="the address to listen on; any but loopback (0.0.0.0, a LAN address) asks "
            "every visitor for a token: SIYU_STUDIO_TOKEN, or a new one printed with the URL"
        ),
    ] = "127.0.0.1",
) -> None:
    """Serve the journey studio on http://127.0.0.1:PORT: every journey with its status,
    version, schedule, channels and the ledger's figures; a journey's page to edit it, checked
    as you type (each problem on its line, the picture with per-step figures, each step's
    message previewed for masked customers, the diff against the last commit); a backtest of
    the journey file against its last committed version, over a copy of the database; a
    customer's decisions by id, external id or masked mobile (138****5678), every personal
    field masked. Saving writes the journey's file in journeys/ as typed, only when `siyu
    validate` would accept it.

    Only this machine can use it by default. Bound elsewhere (--host 0.0.0.0), every request
    must carry the token of the printed URL (it becomes a cookie at the first visit)."""
    import secrets

    import uvicorn

    from siyu.project import Project
    from siyu.settings import settings
    from siyu.storage.engine import database_url
    from siyu.studio.access import Access
    from siyu.studio.app import create_app

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    token: str | None = None
    if not loopback:
        given = settings().studio_token
        token = given.get_secret_value() if given else secrets.token_urlsafe(24)
        if len(token) < TOKEN_LENGTH:
            raise ConfigError(f"SIYU_STUDIO_TOKEN: at least {TOKEN_LENGTH} characters")
    project = Project.find()
    app = create_app(project.root, database_url(), Access(port, token))
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    typer.echo(f"journey studio: {url} (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
