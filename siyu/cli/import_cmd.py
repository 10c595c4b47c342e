"""`siyu import`: customers, orders or events from a CRM's CSV export."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from siyu.errors import ConfigError, SiyuError

console = Console(soft_wrap=True)


def import_command(
    kind: Annotated[str, typer.Argument(help="customers, orders or events")],
    file: Annotated[Path, typer.Argument(help="the CSV export", exists=True, dir_okay=False)],
    mapping: Annotated[
        Path, typer.Option(help="YAML: CSV column per field, date format, time zone, encoding")
    ],
    show: Annotated[int, typer.Option(help="bad rows to list (0: all)")] = 50,
    rejects: Annotated[
        Path | None,
        typer.Option(help="where the bad rows go, as in the file (default: FILE.rejects.csv)"),
    ] = None,
) -> None:
    """Load a CSV export; bad rows are listed as file.csv:LINE: problems, not loaded, and
    copied to FILE.rejects.csv; the good rows load. Exit 2 when any row was bad, 1 when
    nothing was imported (a broken mapping, header or file, or a database error).

    Import customers first, then orders and events (they name customers by external_id).
    Running the same import again updates rows instead of adding them twice.
    """
    from siyu.importer.csv_import import import_csv
    from siyu.importer.database import import_session
    from siyu.importer.mapping import load_mapping

    target = rejects or file.with_name(f"{file.stem}.rejects.csv")
    try:
        spec = load_mapping(mapping, kind)
        with (
            _staged(target) as staged,  # moved into place only after the commit below
            import_session() as session,
            Progress(
                TextColumn(f"importing {file.name}"),
                BarColumn(),
                DownloadColumn(),
                console=console,
                transient=True,
                disable=not console.is_terminal,  # no bar (nor its blank line) in logs
            ) as bar,
        ):
            task = bar.add_task("", total=file.stat().st_size)
            result = import_csv(
                session, file, spec, lambda n: bar.update(task, completed=n), staged
            )
            staged.keep = bool(result.bad)
    except SiyuError as error:
        Console(stderr=True, soft_wrap=True).print(str(error), markup=False, highlight=False)
        raise typer.Exit(1) from None
    for line in result.report(show or None):
        console.print(line, markup=False, highlight=False)
    if show and len(result.bad) > show:
        console.print(f"... and {len(result.bad) - show} more bad rows (--show 0 lists all)")
    console.print(
        f"{result.kind}: {result.rows} rows read, {result.inserted} added, "
        f"{result.updated} updated, {result.unchanged} unchanged, "
        f"{len(result.bad)} bad (not loaded)",
        markup=False,
        highlight=False,
    )
    if result.bad:
        console.print(f"bad rows written to {target}", markup=False, highlight=False)
        raise typer.Exit(2)


class _Staged:
    """The rejects file while the import runs: a temporary file beside the target."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.keep = False

    def write(self, data: bytes) -> int:
        return self.handle.write(data)

    def writelines(self, lines: list[bytes]) -> None:
        self.handle.writelines(lines)


@contextmanager
def _staged(target: Path) -> Iterator[_Staged]:
    """Rejects go to a temporary file, moved into place only after the import committed;
    on any failure it is removed, so a rejects file always belongs to a finished import."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as error:
        raise ConfigError(f"{target}: cannot write the rejects file ({error.strerror})") from None
    staged = _Staged(os.fdopen(fd, "wb"))
    committed = False
    try:
        yield staged
        committed = True
    finally:
        staged.handle.close()
        if committed and staged.keep:
            os.replace(name, target)
        else:
            os.unlink(name)
