"""How many access tokens a fleet fetches: `--ticks` ticks, each run by `--processes` tick
processes at once (python -m bench.driver, as separate flow runs or workers would), on one
database, against the sandbox; prints the provider's token calls counted by the sandbox.

    python -m bench.token_fetches [--ticks 10] [--processes 2] [--channel service_account]
        [--database-url URL]   # default: a SQLite file in a temporary directory
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from bench.scenario import ROOT, write_project
from siyu.engine.versions import ensure_journey
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import start_sandbox
from siyu.storage.engine import make_engine, make_sessionmaker, write_session
from siyu.storage.migrate import upgrade
from siyu.storage.models import ChannelIdentity, Consent, Customer, Delivery, Order

START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
TOKEN_CALLS = ("wecom.gettoken", "wechat.token", "wechat.stable_token")
PER_TICK = 60  # customers whose message falls due in each tick


def seed(url: str, workdir: Path, channel: str, ticks: int) -> None:
    """The journey, and PER_TICK customers whose day-1 message is due in each tick."""
    spec = write_project(workdir, "tokens", channel)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with write_session(sessions) as session:
        ensure_journey(session, spec, START - timedelta(days=2))
    with write_session(sessions) as session:
        for i in range(ticks * PER_TICK):
            paid = (
                START
                - timedelta(days=1)
                + timedelta(minutes=10 * (i // PER_TICK), seconds=i % PER_TICK)
            )
            customer = Customer(name=f"顾客{i}", timezone="Asia/Shanghai", created_at=paid)
            session.add(customer)
            session.flush()
            session.add(
                ChannelIdentity(customer_id=customer.id, kind="wechat_openid", value=f"o{i:027d}")
            )
            session.add(
                ChannelIdentity(customer_id=customer.id, kind="mobile", value=f"1380{i:07d}")
            )
            session.add(
                Consent(customer_id=customer.id, purpose="marketing", granted=True, updated_at=paid)
            )
            session.add(
                Order(
                    order_no=f"T{i:08d}",
                    customer_id=customer.id,
                    paid_at=paid,
                    amount=Decimal("1"),
                    category="护肤",
                    order_seq=1,
                    store="小程序商城",
                )
            )
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.token_fetches")
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channel", default="service_account")
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, start_sandbox() as sandbox:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite:///{workdir / 'tokens.db'}"
        upgrade(url)
        seed(url, workdir, args.channel, args.ticks)
        command = [
            sys.executable, "-m", "bench.driver", "--database-url", url, "--workdir", tmp,
            "--journey", "tokens", "--channel", args.channel, "--sandbox-url", sandbox.url,
            "--batch-size", "5",
        ]  # fmt: skip
        # the first tick enrolls everyone; each tick finds PER_TICK messages due
        for tick in range(args.ticks):
            now = START + timedelta(minutes=10 * tick, seconds=PER_TICK)
            runs = [
                subprocess.Popen(
                    [*command, "--now", now.isoformat()], cwd=ROOT, stdout=subprocess.DEVNULL
                )
                for _ in range(args.processes)
            ]
            if any(run.wait() != 0 for run in runs):
                raise SystemExit(f"a tick process failed in tick {tick}")
        with SandboxClient(sandbox.url) as client:
            calls = {endpoint: len(client.calls(endpoint=endpoint)) for endpoint in TOKEN_CALLS}
            sent = len(client.messages(channel=args.channel))
        engine = make_engine(url)
        with engine.connect() as connection:
            rows = connection.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            )
            ledger = {str(status): int(n) for status, n in rows}
        engine.dispose()
    print(
        json.dumps(
            {
                "ticks": args.ticks,
                "processes": args.processes,
                "messages": sent,
                "ledger": ledger,
                "token_calls": calls,
            }
        )
    )


if __name__ == "__main__":
    main()
