"""A brand for the tests that drive the benchmark's one-step journey (bench/scenario.py): the
journey written and switched on, first buyers waiting for its step, and the command line of
one tick in its own process (bench/driver.py), which a test can kill or run twice at once."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bench.scenario import write_project
from siyu.engine.versions import ensure_journey
from siyu.language.spec import JourneySpec
from siyu.storage.engine import write_session
from tests.conftest import Shop, local


def one_step_brand(
    workdir: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    journey: str,
    channel: str,
    buyers: int,
) -> JourneySpec:
    """`journey` on `channel` (its step a day after entry), switched on at day 0, and `buyers`
    first orders at 10:00 on day 0."""
    spec = write_project(workdir, journey, channel)
    with write_session(sessions) as session:
        ensure_journey(session, spec, local(0))
    for i in range(buyers):
        shop.order(shop.customer(f"顾客{i}"), local(0, 10), seq=1)
    return spec


def tick_command(
    database_url: str, workdir: Path, journey: str, channel: str, sandbox_url: str, *extra: str
) -> list[str]:
    """One tick of the journey in its own process; add `--now ISO`."""
    return [
        sys.executable, "-m", "bench.driver", "--database-url", database_url,
        "--workdir", str(workdir), "--journey", journey, "--channel", channel,
        "--sandbox-url", sandbox_url, *extra,
    ]  # fmt: skip
