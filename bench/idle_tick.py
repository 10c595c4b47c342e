"""What a tick costs when nothing is due (run on purpose; not part of the test suite):

    python -m bench.idle_tick --customers 5000
    python -m bench.idle_tick --customers 1000000 --history 1000000
    python -m bench.idle_tick --customers 5000 --database-url postgresql+psycopg://...

A minute-cron journey pays its idle tick every minute, so it must cost what is due, not what
the brand has accumulated. Builds the benchmark brand (bench/data.py) with nothing due: every
customer bought 20 hours ago and is enrolled, the journey's one step comes at 1 day; with
`--history N`, N enrollments of earlier purchases, each completed with one ledger row. The
journey passes the flow's own content check (an SMS with its 【签名】 and 回T退订).

Then, after one warm-up tick (`--reuse` ticks on from the previous run's moments: the ticks
stay idle): --ticks flow runs of `journey_tick` (the deployed flow, on the
Prefect API of the environment, else Prefect's ephemeral one) and the same number of ticks of
the engine alone, phase by phase. Prints medians: the flow run, its summary artifact, and
each phase.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.data import Shape, build
from bench.scenario import ROOT, TEMPLATE, write_project
from siyu.language.spec import JourneySpec
from siyu.settings import export

# The bench's template made fit to go live as an SMS: signature first, opt-out last.
SMS_TEMPLATE = f"【思域商城】{TEMPLATE}回T退订"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_tick")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument(
        "--history", type=int, default=0, help="completed enrollments of earlier purchases"
    )
    parser.add_argument(
        "--active",
        type=int,
        help="only the last N customers bought recently (20 hours ago) and are in the journey; "
        "the others bought 200-300 days ago and completed it, their ledger row sent "
        "(default: every customer bought recently)",
    )
    parser.add_argument("--ticks", type=int, default=5, help="timed ticks (medians quoted)")
    parser.add_argument("--database-url", help="default: a SQLite file in --workdir")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/siyu-idle-tick"))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="tick the data an earlier run left in --workdir (same sizes) instead of building",
    )
    args = parser.parse_args(argv)

    project = args.workdir / "project"
    url = args.database_url or f"sqlite:///{args.workdir / 'bench.db'}"
    export(project_dir=str(project), database_url=url)
    if args.reuse:
        spec = write_live_project(project)
        print(f"data: reused from {url}")
    else:
        spec = _build_brand(args, project, url)
    _measure(spec, args.ticks)


def _build_brand(args: argparse.Namespace, project: Path, url: str) -> JourneySpec:
    from bench.step import NOW, _reset_postgres
    from siyu.storage.engine import make_engine

    shutil.rmtree(args.workdir, ignore_errors=True)
    if args.database_url:
        _reset_postgres(url)
    spec = write_live_project(project)
    engine = make_engine(url)
    started = time.perf_counter()
    build(engine, Shape(args.customers, 0, 0, NOW), spec, lambda _: None)
    if args.history:
        _add_history(engine, args.customers, args.history)
    if args.active is not None:
        _age(engine, args.customers - args.active, args.history)
    active = args.customers if args.active is None else args.active
    print(
        f"data: {args.customers:,} customers ({active:,} bought 20 hours ago, in the journey), "
        f"{args.history:,} more completed enrollments with their ledger rows; "
        f"built in {time.perf_counter() - started:.1f} s ({url})"
    )
    engine.dispose()
    return spec


def write_live_project(project: Path, *, batched_sms: bool = False) -> JourneySpec:
    """The project a deployment of the bench's journey would have: journeys/bench.yaml (one
    SMS step a day after the first order) that passes the flow's content check, its template
    and the repository's channels.yaml; `batched_sms`: SMS through SendBatchSms, checked at
    the provider only after a failure (a brand sending in volume)."""
    shutil.rmtree(project, ignore_errors=True)
    (project / "journeys").mkdir(parents=True)
    spec = write_project(project / "journeys", "bench", "sms")
    (project / "journeys" / "templates").rename(project / "templates")
    (project / "templates" / "hello.j2").write_text(SMS_TEMPLATE, encoding="utf-8")
    channels = (ROOT / "channels.yaml").read_text(encoding="utf-8")
    if batched_sms:
        channels = channels.replace("    precheck: always\n", _BATCHED, 1)
        assert _BATCHED in channels, "channels.yaml's sms no longer says `precheck: always`"
    (project / "channels.yaml").write_text(channels, encoding="utf-8")
    return spec


_BATCHED = "    batch_api: true\n    precheck: after_failure\n"


def _add_history(engine: Engine, customers: int, history: int) -> None:
    """`history` enrollments of earlier purchases (ids after the brand's), each completed with
    its one ledger row sent."""
    from bench.step import NOW

    long_ago = (NOW - timedelta(days=200)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO enrollments (id, journey_id, journey_name, customer_id, entry_key, "
                "entered_at, enrolled_at, status, holdout) "
                "SELECT :base + n, 1, 'bench', 1 + (n % :customers), 'order:old:' || n, "
                ":at, :at, 'completed', false FROM (" + _numbers(engine, history) + ") AS s"
            ),
            dict(base=customers, customers=customers, at=long_ago),
        )
        connection.execute(
            text(
                "INSERT INTO deliveries (id, enrollment_id, journey_name, step_id, customer_id, "
                "channel, purpose, status, idempotency_key, attempts, due_at, created_at, "
                "updated_at, sent_at) "
                "SELECT n, :base + n, 'bench', 'hello', 1 + (n % :customers), 'sms', "
                "'marketing', 'sent', 'old-' || n, 1, :at, :at, :at, :at FROM ("
                + _numbers(engine, history)
                + ") AS s"
            ),
            dict(base=customers, customers=customers, at=long_ago),
        )
        connection.execute(text("ANALYZE"))


def _age(engine: Engine, old: int, history: int) -> None:
    """Customers 1..`old` bought 200-300 days ago and completed the journey (one ledger row
    each, sent), as most of a real brand's customers did."""
    from bench.step import NOW

    def stamp(days: str) -> str:  # SQL for NOW - `days` days, stored as bench.data stores it
        if engine.dialect.name == "postgresql":
            return f"(CAST(:now AS timestamptz) - ({days}) * interval '1 day')"
        return f"strftime('%Y-%m-%d %H:%M:%f000', :now, '-' || ({days}) || ' days')"

    now = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE orders SET paid_at = {stamp('200 + id % 100')} WHERE id <= :old"),
            dict(now=now, old=old),
        )
        connection.execute(
            text(
                "UPDATE enrollments SET status = 'completed', "
                f"entered_at = {stamp('200 + id % 100')}, enrolled_at = {stamp('200 + id % 100')}"
                " WHERE id <= :old"
            ),
            dict(now=now, old=old),
        )
        connection.execute(
            text(
                "INSERT INTO deliveries (id, enrollment_id, journey_name, step_id, customer_id, "
                "channel, purpose, status, idempotency_key, attempts, due_at, created_at, "
                "updated_at, sent_at) "
                "SELECT :base + id, id, 'bench', 'hello', id, 'sms', 'marketing', 'sent', "
                "'aged-' || id, 1, entered_at, entered_at, entered_at, entered_at "
                "FROM enrollments WHERE id <= :old"
            ),
            dict(base=history, old=old),
        )
        connection.execute(text("ANALYZE"))


def _numbers(engine: Engine, count: int) -> str:
    """A SELECT of n = 1..count."""
    if engine.dialect.name == "postgresql":
        return f"SELECT generate_series(1, {int(count)}) AS n"
    return (
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
        f"WHERE n < {int(count)}) SELECT n FROM c"
    )


def _measure(spec: JourneySpec, ticks: int) -> None:
    from bench.step import NOW
    from flows.journey_flow import journey_tick
    from siyu.engine.tick import tick_phases
    from siyu.metrics.tick_summary import funnel_markdown
    from tasks.context import TickSettings, engine_context, release

    moments = [NOW + timedelta(minutes=minute) for minute in range(ticks + 1)]
    journey_tick(journey=spec.journey, now=moments[0].isoformat(), throttle=False)  # warm-up
    flow_seconds: list[float] = []
    flow_cpu: list[float] = []
    for moment in moments[1:]:
        started, cpu = time.perf_counter(), time.process_time()
        results = journey_tick(journey=spec.journey, now=moment.isoformat(), throttle=False)
        flow_seconds.append(time.perf_counter() - started)
        flow_cpu.append(time.process_time() - cpu)
        due = sum(n for counts in results.values() for n in counts.values())
        assert due == 0, f"the tick was not idle: {results}"

    from siyu.project import Project
    from siyu.storage.engine import database_url

    settings = TickSettings(str(Project.find().root), database_url(), throttle=False)
    ctx = engine_context(settings)
    phases: dict[str, list[float]] = defaultdict(list)
    for moment in moments[1:]:
        for phase in tick_phases(spec):
            started = time.perf_counter()
            phase.run(ctx, spec, moment)
            phases[phase.name].append(time.perf_counter() - started)
    funnel: list[float] = []
    for moment in moments[1:]:
        started = time.perf_counter()
        with ctx.sessions() as session:
            funnel_markdown(session, spec, moment)
        funnel.append(time.perf_counter() - started)
    release(settings)

    rows: list[tuple[str, Any]] = [
        ("idle tick through journey_tick (flow run)", flow_seconds),
        ("  its CPU in this process (the API server's apart)", flow_cpu),
    ]
    rows += [(f"  engine: {name}", seconds) for name, seconds in phases.items()]
    engine_total = [sum(values) for values in zip(*phases.values(), strict=True)]
    rows.append(("  engine: all phases", engine_total))
    rows.append(("the daily funnel artifact (not part of a tick)", funnel))
    print(f"medians of {ticks} ticks (min-max):")
    for name, seconds in rows:
        print(
            f"  {name:<48} {statistics.median(seconds):7.3f} s "
            f"({min(seconds):.3f}-{max(seconds):.3f})"
        )


if __name__ == "__main__":
    main()
