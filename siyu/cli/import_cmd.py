"""`siyu import`: customers, orders or events from a CRM's CSV export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from siyu.errors import SiyuError

console = Console(soft_wrap=True)


def import_command(
    kind: Annotated[str, typer.Argument(help="customers, orders or events")],
    file: Annotated[Path, typer.Argument(help="the CSV export", exists=True, dir_okay=False)],
    mapping: Annotated[
        Path, typer.Option(help="YAML: CSV column per field, date format, time zone, encoding")
    ],
    show: Annotated[int, typer.Option(help="bad rows to list (0: all)")] = 50,
) -> None:
    """Load a CSV export; bad rows are listed as file.csv:LINE: reason and skipped.

    Import customers first, then orders and events (they name customers by external_id).
    Running the same import again updates rows instead of adding them twice.
    """
    from db.engine import make_engine, make_sessionmaker
    from siyu.importer.csv_import import import_csv
    from siyu.importer.mapping import load_mapping

    try:
        spec = load_mapping(mapping, kind)
        total = max(sum(1 for _ in file.open("rb")) - 1, 0)
        engine = make_engine()
        with (
            Progress(
                TextColumn(f"importing {file.name}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                transient=True,
            ) as bar,
            make_sessionmaker(engine)() as session,
            session.begin(),
        ):
            task = bar.add_task("", total=total)
            result = import_csv(session, file, spec, lambda n: bar.update(task, completed=n))
        engine.dispose()
    except SiyuError as error:
        Console(stderr=True, soft_wrap=True).print(str(error), markup=False, highlight=False)
        raise typer.Exit(1) from None
    for line in result.report()[: show or None]:
        console.print(line, markup=False, highlight=False)
    if show and len(result.bad) > show:
        console.print(f"... and {len(result.bad) - show} more bad rows (--show 0 lists all)")
    console.print(
        f"{result.kind}: {result.rows} rows read, {result.inserted} added, "
        f"{result.updated} updated, {len(result.bad)} bad (not loaded)"
    )
    if result.bad:
        raise typer.Exit(2)
