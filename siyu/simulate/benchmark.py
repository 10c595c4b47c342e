"""Measures `simulate`: builds a demo database of the given size (siyu.storage.demo_data) and
backtests the canonical journey over it, printing the figures.

    python -m siyu.simulate.benchmark --customers 5000 --history-days 60 --simulate-days 60

`--resolution 1h` rounds the history's times down to the hour (var/benchmark-1h.db): the
backtest ticks at each moment something can happen, so its ticks follow the history's
resolution (at most one an hour then; with times to the second, up to one per event).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from pathlib import Path

from siyu.language.channel_kinds import STANDARD_CHANNELS, ToolProject
from siyu.language.durations import format_duration, parse_duration
from siyu.simulate.runner import SimulationSettings, simulate
from siyu.storage.demo_data import DemoSpec, generate
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.migrate import upgrade


def _customers(url: str) -> int | None:
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    from siyu.storage.models import Customer

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(Customer)) or 0)
    except OperationalError:
        return None
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--history-days", type=int, default=60)
    parser.add_argument("--simulate-days", type=int, default=60)
    # also a tick at least this often (siyu.simulate.runner.SimulationSettings.every)
    parser.add_argument("--every-hours", type=float, default=None)
    # the history's order times rounded down to this, e.g. 1h (default: to the second)
    parser.add_argument("--resolution", type=parse_duration, default=None)
    parser.add_argument("--journey", default="first-purchase-care")
    parser.add_argument("--database", type=Path, default=None)
    args = parser.parse_args()
    demo = DemoSpec(customers=args.customers, days=args.history_days, resolution=args.resolution)
    if args.database is None:  # one file per resolution: a reused file must match it
        suffix = f"-{format_duration(args.resolution)}" if args.resolution else ""
        args.database = Path(f"var/benchmark{suffix}.db")
    url = f"sqlite:///{args.database}"
    if args.database.exists() and _customers(url) != args.customers:
        args.database.unlink()  # built for another size: a reused file would mislead
    if args.database.exists():
        upgrade(url)  # a file from an older schema gets the new tables
    else:
        started = time.perf_counter()
        upgrade(url)
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session, session.begin():
            data = generate(session, demo)
        engine.dispose()
        print(f"generated {data} in {time.perf_counter() - started:.0f} s")
    project = ToolProject(Path.cwd().resolve())
    spec = project.journey(args.journey)
    settings = SimulationSettings(
        demo.start,
        demo.start + timedelta(days=args.simulate_days),
        None if args.every_hours is None else timedelta(hours=args.every_hours),
    )
    last = [time.perf_counter()]
    ticks = [0]

    def progress(_done: int, _total: int, now: datetime) -> None:
        ticks[0] += 1
        if ticks[0] % 240 == 0:
            took = time.perf_counter() - last[0]
            last[0] = time.perf_counter()
            day = (now - demo.start).days
            print(f"  tick {ticks[0]} (day {day}): last 240 ticks {took:.1f} s", flush=True)

    report = simulate(spec, url, project.templates_dir, STANDARD_CHANNELS, settings, progress)
    often = "at each moment" + (f", every {args.every_hours} h" if args.every_hours else "")
    deliveries = sum(sum(c.values()) for c in report.steps.values())
    print(
        f"{args.customers} customers, {report.ticks} ticks ({often}) over "
        f"{args.simulate_days} days: {report.seconds:.1f} s "
        f"({report.seconds / max(report.ticks, 1) * 1000:.0f} ms/tick), "
        f"{sum(report.enrollments[k] for k in ('active', 'exited', 'completed'))} enrolled, "
        f"{deliveries} ledger rows ({report.seconds / max(deliveries, 1) * 1000:.2f} ms/row)"
    )


if __name__ == "__main__":
    main()
