"""`siyu graph`: draw a journey (Mermaid text or SVG)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from siyu.cli.conventions import JOURNEY_HELP, cli_command


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    svg = "svg"


@cli_command()
def graph_command(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
    format: Annotated[GraphFormat, typer.Option("--format", "-f", help="mermaid or svg")] = (
        GraphFormat.mermaid
    ),
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="file; default: stdout", show_default=False),
    ] = None,
) -> None:
    """Draw a journey: entry, each step with its wait, deadline and channel, exit and goal."""
    from siyu.cli.journey_arg import resolve_journey
    from siyu.graph.draw import to_mermaid, to_svg
    from siyu.graph.model import build_graph
    from siyu.project import Project

    graph = build_graph(resolve_journey(Project.find(), journey))
    text = to_svg(graph) if format == GraphFormat.svg else to_mermaid(graph)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
