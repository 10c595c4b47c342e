"""The `siyu` command line. Each subcommand is a thin shell over a function elsewhere; user
errors (SiyuError) are printed without a traceback and exit with status 1."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from siyu.cli.conventions import (
    CUSTOMER_HELP,
    JOURNEY_HELP,
    NOW_HELP,
    SiyuTyper,
    cli_command,
    parse_moment,
)
from siyu.errors import SiyuError

app = SiyuTyper(help="siyu: lifecycle journeys for private-domain customer operations, as code.")
db_app = SiyuTyper(help="Create and fill the database.")
app.add_typer(db_app, name="db")
# Wide enough for the summary tables when the output is a file or a CI log, not a terminal.
console = Console(width=None if sys.stdout.isatty() else 132)


def _fail(error: SiyuError) -> None:
    Console(stderr=True, soft_wrap=True).print(str(error), markup=False, highlight=False)
    raise typer.Exit(1)


@app.command()
@cli_command()
def validate() -> None:
    """Check every journey in journeys/ and its templates; exit 1 on any problem."""
    from siyu.language.check_project import check_project
    from siyu.language.problems import format_problems
    from siyu.project import Project

    specs, problems = check_project(Project.find())
    if problems:
        Console(stderr=True, soft_wrap=True).print(
            format_problems(problems), markup=False, highlight=False
        )
        raise typer.Exit(1)
    for name, spec in specs.items():
        console.print(f"[green]ok[/green] {name}: {len(spec.steps)} steps")


@app.command()
@cli_command()
def schema() -> None:
    """Write docs/journey.schema.json (editor completion for journey files) from the models."""
    from siyu.language.json_schema import write_schema
    from siyu.project import Project

    console.print(f"wrote {write_schema(Project.find().root)}")


@app.command()
@cli_command(database=True)
def tick(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
    now: Annotated[
        str | None, typer.Option(help=NOW_HELP, show_default=False, metavar="TIME")
    ] = None,
    channel_base_url: Annotated[
        str | None,
        typer.Option(
            help="send every channel to this gateway, e.g. the sandbox's URL", show_default=False
        ),
    ] = None,
) -> None:
    """Run one tick of a journey through its Prefect flow."""
    from siyu.cli.conventions import local_prefect, quiet_user_errors_in_prefect, require_schema
    from siyu.cli.journey_arg import project_journey
    from siyu.cli.project_flows import project_flow
    from siyu.language.check_project import content_problems
    from siyu.language.problems import SpecError
    from siyu.project import Project

    # Everything a user can get wrong is checked here, before the flow starts: inside it,
    # Prefect would print the error's traceback before our one line.
    project = Project.find()
    spec = project_journey(project, journey)
    problems = content_problems(project, spec)
    if problems:
        raise SpecError(problems)
    moment = parse_moment(now, spec.timezone)
    require_schema()
    journey_tick = project_flow(project)  # plugs Prefect in (Secret blocks) before the check
    for channel in project.build_channels(channel_base_url).values():  # secrets, URLs
        channel.close()
    with local_prefect(), quiet_user_errors_in_prefect():
        results = journey_tick(
            journey=spec.journey, now=moment.isoformat(), channel_base_url=channel_base_url
        )
    for phase, counts in results.items():
        if counts:
            console.print(f"{phase}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


@app.command()
@cli_command(database=True, tables=True)
def summary(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
) -> None:
    """Per-step counts from the send ledger: sent, pending, failed, skipped by reason."""
    from siyu.cli.journey_arg import project_journey
    from siyu.cli.tables import summary_table
    from siyu.project import Project
    from siyu.reports.step_summary import summarize
    from siyu.storage.engine import make_engine, make_sessionmaker

    spec = project_journey(Project.find(), journey)
    engine = make_engine()
    with make_sessionmaker(engine)() as session:
        console.print(summary_table(summarize(session, spec)))
    engine.dispose()


@app.command()
@cli_command(database=True, tables=True)
def explain(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
    customer: Annotated[str, typer.Argument(help=CUSTOMER_HELP, show_default=False)],
    now: Annotated[
        str | None, typer.Option(help=NOW_HELP, show_default=False, metavar="TIME")
    ] = None,
) -> None:
    """Every decision about one customer in one journey, with its reason."""
    from siyu.cli.journey_arg import project_journey
    from siyu.customer_ref import find_customer
    from siyu.project import Project
    from siyu.reports.explain import explain as explain_customer
    from siyu.storage.engine import make_engine, make_sessionmaker

    spec = project_journey(Project.find(), journey)
    moment = parse_moment(now, spec.timezone)
    engine = make_engine()
    with make_sessionmaker(engine)() as session:
        found = find_customer(session, customer)
        for line in explain_customer(session, spec, found.id, moment):
            console.print(line, markup=False, highlight=False)
    engine.dispose()


@app.command()
@cli_command(database=True, tables=True)
def resolve(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
    customer: Annotated[
        str | None,
        typer.Argument(help=f"{CUSTOMER_HELP}; without it, every one", show_default=False),
    ] = None,
    step: Annotated[
        str | None,
        typer.Option(help="the step, when the customer has several in doubt", show_default=False),
    ] = None,
    sent: Annotated[bool, typer.Option("--sent", help="it arrived: record it as sent")] = False,
    send_again: Annotated[
        bool, typer.Option("--send-again", help="it did not arrive: send it at the next tick")
    ] = False,
) -> None:
    """Messages in doubt: listed, or one decided. A message is in doubt when a channel that can
    neither deduplicate nor look up a message (e-mail) may have sent it: it is never sent
    again blind; a person checks whether it arrived and decides."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from siyu.cli.journey_arg import journey_step, project_journey
    from siyu.customer_ref import find_customer
    from siyu.engine.ledger import in_doubt, resolve_in_doubt
    from siyu.errors import ConfigError
    from siyu.project import Project
    from siyu.storage.engine import make_engine, make_sessionmaker

    spec = project_journey(Project.find(), journey)
    if step is not None:
        journey_step(spec, step)
    if sent and send_again:
        raise ConfigError("--sent and --send-again exclude each other: choose one")
    engine = make_engine()
    with make_sessionmaker(engine)() as session, session.begin():
        found = find_customer(session, customer) if customer is not None else None
        who = f"customer {found.id}" if found is not None else spec.journey
        if not (sent or send_again):
            rows = in_doubt(session, spec.journey, found.id if found is not None else None)
            console.print(f"{who}: {len(rows)} message(s) in doubt", markup=False)
            for row in rows:
                console.print(
                    f"  customer {row.customer_id}  {row.step_id}  {row.channel}  since "
                    f"{row.updated_at.astimezone(ZoneInfo(spec.timezone)):%Y-%m-%d %H:%M} "
                    f"{spec.timezone}: {row.reason_detail or ''}",
                    markup=False,
                    highlight=False,
                )
        elif found is None:
            raise ConfigError("name the customer whose message you decide on")
        else:
            row = resolve_in_doubt(session, spec.journey, found.id, step, sent, datetime.now(UTC))
            what = "recorded as sent" if sent else "to be sent again at the next tick"
            console.print(f"customer {found.id}, step {row.step_id}: {what}", markup=False)
    engine.dispose()


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="customers to generate", min=1)] = 5000,
    days: Annotated[int, typer.Option(help="days of simulated time", min=1)] = 21,
    every_hours: Annotated[
        int, typer.Option(help="hours between ticks (10:00 and 22:00 with 12)", min=1)
    ] = 12,
    database: Annotated[Path, typer.Option(help="SQLite file (recreated)")] = Path("var/demo.db"),
    sandbox_port: Annotated[
        int,
        typer.Option(
            help="the sandbox's port when free, else any free one (0: any)", min=0, max=65535
        ),
    ] = 8765,
) -> None:
    """Run the first-purchase journey on demo data, through Prefect and the channel sandbox."""
    from siyu.cli.conventions import local_prefect
    from siyu.cli.demo_output import print_demo_result, tick_progress, use_demo_prefect_home
    from siyu.cli.project_flows import project_flow
    from siyu.demo import DemoSettings, run_demo
    from siyu.errors import ConfigError
    from siyu.project import Project

    # The demo prints its own summary; Prefect's per-task INFO lines would drown it (the runs
    # and their logs are in the Prefect UI).
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    use_demo_prefect_home()  # before Prefect reads its settings
    settings = DemoSettings(
        customers=customers,
        days=days,
        database=database,
        every=timedelta(hours=every_hours),
        sandbox_port=sandbox_port,
    )
    console.print(
        f"[bold]siyu demo[/bold]: {customers} customers, journey "
        f"'{settings.journey}' over {days} days, a tick every {every_hours} h "
        "(each tick is one Prefect flow run)"
    )
    try:
        with local_prefect(), tick_progress(console) as progress:
            project = Project.find()
            result = run_demo(project, settings, progress, project_flow(project))
    except SiyuError as error:
        _fail(error)
        return
    except RuntimeError as error:  # Prefect's own words for a local API that never came up
        if "ephemeral Prefect API" not in str(error):
            raise
        _fail(
            ConfigError(
                "Prefect's local API did not start in time (a busy machine?): run the demo "
                "again, or give it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
            )
        )
        return
    print_demo_result(console, settings, result)


@app.command()
@cli_command(database=True, tables=True)
def unsubscribe(
    token: Annotated[
        str, typer.Argument(help="the token of an unsubscribe link", show_default=False)
    ],
) -> None:
    """Apply an unsubscribe link's token, as the link's web endpoint does.

    The customer is suppressed on that channel, or on all, before the next send."""
    from datetime import UTC, datetime

    from siyu.engine.optouts import apply_unsubscribe
    from siyu.storage.engine import make_engine, make_sessionmaker

    engine = make_engine()
    with make_sessionmaker(engine)() as session, session.begin():
        customer, channel = apply_unsubscribe(session, token, datetime.now(UTC))
    engine.dispose()
    where = "every channel" if channel == "*" else channel
    console.print(f"customer {customer} unsubscribed from {where}")


@db_app.command("upgrade")
@cli_command(database=True)
def db_upgrade() -> None:
    """Create the database's tables, or apply the migrations it lacks (Alembic)."""
    from siyu.cli.conventions import shown_url
    from siyu.storage.engine import database_url
    from siyu.storage.migrate import upgrade

    upgrade()
    console.print(f"database {shown_url(database_url())} is up to date")


@db_app.command("seed")
@cli_command(database=True, tables=True)
def db_seed(
    customers: Annotated[int, typer.Option(help="customers to generate", min=1)] = 5000,
    arrivals: Annotated[
        int, typer.Option(help="of them, first purchases arriving over the next two hours", min=0)
    ] = 120,
    now: Annotated[
        str | None,
        typer.Option(
            help="the moment the data is built around: 2026-10-10T09:00 (read in "
            "Asia/Shanghai, the demo brand's zone) or with an offset; default: now",
            show_default=False,
            metavar="TIME",
        ),
    ] = None,
) -> None:
    """Fill an empty database with demo data around the current time: 60 days of history up
    to now, and new first purchases arriving over the next two hours, so that a deployed
    journey's ticks enroll and send."""
    from zoneinfo import ZoneInfo

    from siyu.cli.conventions import parse_moment, shown_url
    from siyu.storage.demo_data import around_now, generate
    from siyu.storage.engine import database_url, make_engine, make_sessionmaker

    moment = parse_moment(now, "Asia/Shanghai")
    engine = make_engine()
    with make_sessionmaker(engine)() as session, session.begin():
        made = generate(session, around_now(moment, customers, min(arrivals, customers)))
    engine.dispose()
    console.print(f"seeded {shown_url(database_url())}:", markup=False, highlight=False)
    lines = [
        ("customers", made.customers),
        ("orders", made.orders),
        ("repurchase within 14 days", made.repurchased_within_14d),
        ("never come back", made.never_repurchased),
        ("first purchases still to arrive", made.arrivals),
    ]
    for label, value in lines:
        console.print(f"  {label:<34} {value:>8,}", markup=False, highlight=False)
    if made.arrivals_until is not None:
        until = made.arrivals_until.astimezone(ZoneInfo("Asia/Shanghai"))
        console.print(f"  they arrive until {until:%H:%M} Asia/Shanghai", markup=False)


@app.command()
@cli_command()
def sandbox(
    host: Annotated[str, typer.Option(help="loopback address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port", min=1, max=65535)] = 8765,
    state: Annotated[
        Path | None,
        typer.Option(
            help="messages, WeCom tasks and join ways to start with (`siyu demo` writes "
            "var/sandbox-state.json); without it the sandbox starts empty, so a live "
            "journey's messages are never counted as duplicates of the demo's",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Serve the local channel sandbox (WeCom, WeChat, SMS, e-mail, webhook APIs)."""
    from siyu.sandbox.cli import run

    run(host, port, state)


def main() -> None:  # pragma: no cover - console entry point
    # The client-side opt-out standard, read by Prefect when it is first imported (no
    # Prefect setting covers it): no telemetry notice, no usage events from this process.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        app()
    except SiyuError as error:
        Console(stderr=True).print(str(error), markup=False)
        sys.exit(1)


def _register_tools() -> None:
    """The marketer tools live in their own modules (siyu/cli/*_cmd.py)."""
    from siyu.cli.deploy_cmd import deploy_command
    from siyu.cli.graph_cmd import graph_command
    from siyu.cli.import_cmd import import_command
    from siyu.cli.preview_cmd import preview_command
    from siyu.cli.simulate_cmd import simulate_command
    from siyu.cli.studio_cmd import studio_command
    from siyu.cli.watchdog_cmd import watchdog_command

    app.command("preview")(preview_command)
    app.command("graph")(graph_command)
    app.command("simulate")(simulate_command)
    # The importer's own module; the convention's `--database` is added here. Its schema
    # check is the importer's own (siyu/importer/database.py: the tables an import writes,
    # the latest migration): checking twice cost every import 0.2 s of a second engine and
    # of reading the migrations again.
    app.command("import")(cli_command(database=True, tables=False)(import_command))
    app.command("deploy")(deploy_command)
    app.command("watchdog")(watchdog_command)
    app.command("studio")(studio_command)
    _register_measure()


def _register_measure() -> None:
    """Reports, clicks, segments, alerts and the data timetable (siyu/cli/report_cmd.py...)."""
    from siyu.cli.report_cmd import clicks_app, report_command
    from siyu.cli.segments_cmd import alerts_app, segments_app

    app.command("report")(report_command)
    app.add_typer(clicks_app, name="clicks")
    app.add_typer(segments_app, name="segments")
    app.add_typer(alerts_app, name="alerts")


_register_tools()
