"""`siyu preview`: what one step will say to one customer (personal data masked)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from siyu.cli.conventions import CUSTOMER_HELP, JOURNEY_HELP, cli_command

console = Console(soft_wrap=True)


@cli_command(database=True)
def preview_command(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
    step: Annotated[str, typer.Argument(help="the step's id", show_default=False)],
    customer: Annotated[
        str | None,
        typer.Option(help=f"{CUSTOMER_HELP}; omit for sample data", show_default=False),
    ] = None,
) -> None:
    """Render one step's message as the engine would, for a real customer or sample data."""
    from siyu.cli.conventions import missing_sqlite_file
    from siyu.cli.journey_arg import journey_step, resolve_journey
    from siyu.preview.render_preview import (
        has_database,
        preview_customer,
        preview_sample,
    )
    from siyu.project import Project
    from siyu.storage.engine import database_url, make_engine, make_sessionmaker

    project = Project.find()
    spec = resolve_journey(project, journey)
    chosen = journey_step(spec, step)
    if customer is None or missing_sqlite_file(database_url()):  # never create one here
        if customer is not None:
            console.print("[yellow]no database set up: showing sample data[/yellow]")
        result = preview_sample(spec, chosen, project.templates_dir)
    else:
        engine = make_engine()
        with make_sessionmaker(engine)() as session:
            if has_database(session):
                result = preview_customer(session, spec, chosen, project.templates_dir, customer)
            else:
                console.print("[yellow]no database set up: showing sample data[/yellow]")
                result = preview_sample(spec, chosen, project.templates_dir)
        engine.dispose()
    title = f"{spec.journey} / {chosen.id} via {chosen.send} ({chosen.purpose}) — {result.who}"
    if result.body is None:
        console.print(Panel(f"render error: {result.error}", title=title, style="red"))
        raise typer.Exit(1)
    console.print(Panel(result.body, title=title, title_align="left"))
