"""`siyu studio`: the journey studio, a local web page of the project's journeys."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from siyu.cli.conventions import cli_command
from siyu.errors import ConfigError


@cli_command(database=True)
def studio_command(
    port: Annotated[int, typer.Option(help="the port on 127.0.0.1", min=1, max=65535)] = 8780,
    host: Annotated[str, typer.Option(help="the address to listen on (loopback only)")] = (
        "127.0.0.1"
    ),
) -> None:
    """Serve the journey studio on http://127.0.0.1:PORT: every journey with its status,
    version, schedule, channels and the ledger's figures; a journey's page to edit it, checked
    as you type (each problem on its line, the picture with per-step figures, each step's
    message previewed for masked customers, the diff against the last commit). Saving writes
    the journey's file in journeys/ as typed, only when `siyu validate` would accept it."""
    import uvicorn

    from siyu.project import Project
    from siyu.storage.engine import database_url
    from siyu.studio.app import create_app

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"--host {host}: the studio serves only this machine (127.0.0.1); a token for "
            "other addresses is not built yet"
        )
    project = Project.find()
    app = create_app(project.root, database_url())
    typer.echo(f"journey studio: http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
