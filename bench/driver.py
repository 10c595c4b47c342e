"""One tick of a benchmark journey in its own process, so a test or the benchmark can kill it
with SIGKILL in the middle of a send and start it again:

    python -m bench.driver --database-url URL --workdir DIR --journey NAME --channel CH \\
        --sandbox-url URL --now ISO [--batch-size N] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from bench.scenario import engine_context, write_project
from siyu.engine.tick import run_tick
from siyu.storage.engine import make_engine, make_sessionmaker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.driver")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--journey", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--sandbox-url", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    spec = write_project(args.workdir, args.journey, args.channel)
    engine = make_engine(args.database_url)
    ctx = engine_context(
        make_sessionmaker(engine),
        args.workdir,
        args.sandbox_url,
        batch_size=args.batch_size,
        timeout=args.timeout,
    )
    try:
        counts = run_tick(ctx, spec, datetime.fromisoformat(args.now))
    finally:
        for channel in ctx.channels.values():
            channel.close()
        engine.dispose()
    print(json.dumps({phase: dict(c) for phase, c in counts.items()}, ensure_ascii=False))


if __name__ == "__main__":
    main()
