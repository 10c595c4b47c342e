"""What replaying consent history costs a backtest (run on purpose; not part of the suite):

    python -m bench.consent_replay --customers 100000 --repeat 3

The worst case: every customer's consent dated at a random moment of the year (one change
each) and a tenth of them suppressed at a random moment, so every hourly tick of the year has
about a dozen changes to apply. Builds a SQLite file shaped like a backtest's scratch copy
(var/consent-replay-N.db, reused), then for each repeat copies it and times
siyu.simulate.consent_replay.ConsentReplay: turning the copy back to the start of the year,
then advance() every hour for 365 days, as the backtest does before each tick. Prints each
run and the medians.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from siyu.simulate.consent_replay import ConsentReplay
from siyu.simulate.runner import _fast_sqlite
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import Base, Consent, ConsentChange, Customer, Suppression

START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)


def build(path: Path, customers: int) -> None:
    rng = random.Random(1)
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    tables: dict[Any, list[dict[str, Any]]] = {Customer: [], Consent: [], ConsentChange: []}
    tables[Suppression] = []
    for n in range(1, customers + 1):
        at = START + timedelta(seconds=rng.randrange(int(YEAR.total_seconds())))
        granted = rng.random() < 0.8
        tables[Customer].append(
            dict(id=n, name="x", timezone="Asia/Shanghai", created_at=START - YEAR)
        )
        tables[Consent].append(
            dict(customer_id=n, purpose="marketing", granted=granted, updated_at=at)
        )
        tables[ConsentChange].append(
            dict(
                customer_id=n, kind="consent", name="marketing", previous="absent",
                previous_since=None, state="granted" if granted else "denied", at=at,
                source="import",
            )
        )  # fmt: skip
        if n % 10 == 0:
            moment = START + timedelta(seconds=rng.randrange(int(YEAR.total_seconds())))
            tables[Suppression].append(
                dict(customer_id=n, channel="sms", reason="sms reply 'TD'", created_at=moment)
            )
    with engine.begin() as connection:
        for model, rows in tables.items():
            for start in range(0, len(rows), 5000):
                connection.execute(insert(model), rows[start : start + 5000])
    engine.dispose()


def run(source: Path) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="siyu-consent-replay-") as tmp:
        copy = Path(tmp) / "scratch.db"
        shutil.copyfile(source, copy)
        engine = make_engine(f"sqlite:///{copy}")
        event.listen(engine, "connect", _fast_sqlite)  # as the backtest's copy
        try:
            began = time.perf_counter()
            replay = ConsentReplay(make_sessionmaker(engine), START)
            prepared = time.perf_counter()
            now, ticks = START, 0
            while now <= START + YEAR:
                replay.advance(now)
                now += timedelta(hours=1)
                ticks += 1
            done = time.perf_counter()
        finally:
            engine.dispose()
    return prepared - began, done - prepared, ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = Path("var") / f"consent-replay-{args.customers}.db"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        build(path, args.customers)
    runs = []
    for _ in range(args.repeat):
        prepare, advances, ticks = run(path)
        runs.append((prepare, advances))
        print(
            f"back to the start {prepare:.2f} s; {ticks} hourly advances {advances:.2f} s "
            f"({advances / ticks * 1000:.2f} ms each)",
            flush=True,
        )
    print(
        f"median: back to the start {statistics.median(r[0] for r in runs):.2f} s, "
        f"a year of advances {statistics.median(r[1] for r in runs):.2f} s"
    )


if __name__ == "__main__":
    main()
