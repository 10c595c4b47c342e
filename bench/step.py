"""The engine's send step alone, without Prefect (run on purpose; not part of the suite):

    python -m bench.step                                  # 1,000,000 customers, SQLite
    python -m bench.step --database-url postgresql+psycopg://...   # the same on PostgreSQL
    python -m bench.step --customers 50000 --due 5000 --entrants 5000 --faults 2000  # quick

What users run, the deployed flow, is `python -m bench.run`; this one finds where the engine's
own time goes (no flow run, no task runs, workers warmed before the clock).

The step runs --repeat times (3) on the same due messages, forgetting the sends in between;
the median rate is quoted, as a shared machine's speed varies from run to run.

Builds the brand (bench/data.py), starts the channel sandbox in its own process, then times:
enrollment of the new entrants (the tick's enroll phase), one step with `due` personalised
messages through rendering, the ledger and the sandbox over HTTP (split into --partitions
parallel partitions), the naive way (one Prefect task per message) on a slice, peak memory
(ru_maxrss), and a fault run: 20% 5xx, 5% 429 with Retry-After, 2% timeouts, token expiry,
and the tick process SIGKILLed mid-send, then ticks until nothing is left, verified exactly
once by idempotency key at the sandbox. Figures: docs/scale.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import text

from bench.data import Shape, build
from bench.sandbox_process import cpu_seconds, sandbox_process
from bench.scenario import engine_context, worker_context, write_project
from siyu.engine.context import EngineContext, Partition
from siyu.engine.partition_workers import PartitionWorkers
from siyu.engine.receipts import outcome_labels
from siyu.engine.send_step import process_batch, run_step, select_due
from siyu.engine.tick import tick_phases
from siyu.engine.versions import ensure_journey
from siyu.language.spec import JourneySpec
from siyu.sandbox.client import SandboxClient
from siyu.storage.engine import make_engine, make_sessionmaker, write_session

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.step")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--entrants", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=300)
    parser.add_argument("--faults", type=int, default=20_000, help="messages in the fault run")
    parser.add_argument("--channel", choices=("sms", "webhook"), default="sms")
    parser.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="parallel partitions of the step (3 on 2 cores: while one waits on the channel "
        "or a commit's fsync, the others use the cores)",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="run the partitions in threads of this process (default: worker processes)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the step (the median rate is quoted)"
    )
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--database-url", help="default: a SQLite file in --workdir")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/siyu-bench"))
    args = parser.parse_args(argv)

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    url = args.database_url or f"sqlite:///{args.workdir / 'bench.db'}"
    if args.database_url:
        _reset_postgres(url)
    figures: list[tuple[str, str]] = []
    spec = write_project(args.workdir, "bench", args.channel)
    started = time.perf_counter()
    shape = Shape(args.customers, args.due, args.entrants, NOW)
    # In a process of its own: the brand's data is the benchmark's set-up, not the engine's
    # work, and its memory must not count as the engine process's peak.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as builder:
        builder.submit(_build, url, shape, args.workdir, args.channel).result()
    figures.append(("data built (customers, orders, enrollments)", _secs(started)))
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)

    with (
        sandbox_process() as (sandbox_url, sandbox_pid),
        SandboxClient(sandbox_url, timeout=120) as sandbox,
    ):
        contexts = [
            engine_context(sessions, args.workdir, sandbox_url, batch_size=args.batch_size)
            for _ in range(args.partitions)
        ]
        workers = None
        if not args.threads and args.partitions > 1:
            factory = partial(worker_context, url, str(args.workdir), sandbox_url, args.batch_size)
            workers = PartitionWorkers(factory, args.partitions)
            for ctx in contexts:
                ctx.workers = workers
        phases = {phase.name: phase for phase in tick_phases(spec)}
        started = time.perf_counter()
        enrolled = phases["enroll"].run(contexts[0], spec, NOW).counts["enrolled"]
        seconds = time.perf_counter() - started
        figures.append((f"enroll {enrolled:,} new entrants", f"{seconds:.1f} s"))
        for name in ("opt-outs", "goals", "exits"):
            phases[name].run(contexts[0], spec, NOW)

        worker_pids: set[int] = set()
        if workers is not None:  # the processes' start (imports, connections) is not the step
            worker_pids = workers.warm_up()
        load = os.getloadavg()[0]  # anything else on the cores understates the rate
        mode = "threads" if workers is None else "worker processes"
        runs: list[StepRun] = []
        for repetition in range(args.repeat):
            if repetition:  # the same due messages again: forget the last run's sends
                _forget_sends(sessions, spec, sandbox)
            runs.append(_timed_step(contexts, spec, worker_pids, sandbox_pid))
            run = runs[-1]
            sent = run.counts["sent"]
            figures.append(
                (
                    f"step run {repetition + 1}: {sent:,} personalised messages sent "
                    f"({args.channel}, {args.partitions} partitions in {mode})",
                    f"{run.seconds:.1f} s, {run.rate:,.0f} msg/s; CPU (engine + sandbox) "
                    f"{run.cpu['engine'] * 1e6 / max(sent, 1):.0f} + "
                    f"{run.cpu['sandbox'] * 1e6 / max(sent, 1):.0f} µs per message",
                )
            )
            figures.append(
                ("  other outcomes", str(dict(run.counts - Counter({"sent": sent}))) or "-")
            )
            figures.append(
                ("  exactly once at the sandbox", _exactly_once(sandbox, args.channel, sent))
            )
        worker_peaks = [_process_peak_kb(pid) for pid in sorted(worker_pids)]
        if workers is not None:
            workers.close()
        rate = statistics.median(run.rate for run in runs)
        figures.append(
            (
                f"  end-to-end rate, median of {len(runs)} run(s)",
                f"{rate:,.0f} msg/s (load average before {load:.2f} on {os.cpu_count()} cores)",
            )
        )

        naive_rate = _naive(sessions, args, sandbox_url, spec)
        figures.append(
            (f"naive: one Prefect task per message ({args.naive})", f"{naive_rate:,.1f} msg/s")
        )
        figures.append(("  batched ÷ naive", f"{rate / naive_rate:,.0f}×"))
        figures.append(("peak memory of the engine process (ru_maxrss)", _peak_memory()))
        if worker_peaks:
            figures.append(
                (
                    "  peak memory of each partition worker (VmHWM)",
                    ", ".join(f"{kb / 1024:,.0f} MB" for kb in worker_peaks)
                    + f"; engine + workers {_peak_kb() / 1024 + sum(worker_peaks) / 1024:,.0f} MB",
                )
            )

        _print(figures)  # the main figures now: the fault run takes a while
        if args.faults:
            sandbox.reset()
            figures.extend(_fault_run(url, args, sandbox_url, sandbox))
    engine.dispose()
    _print(figures)


def _print(figures: list[tuple[str, str]]) -> None:
    print()
    width = max(len(label) for label, _ in figures)
    for label, value in figures:
        print(f"{label:<{width}}  {value}", flush=True)


def _build(url: str, shape: Shape, workdir: Path, channel: str) -> None:
    engine = make_engine(url)
    spec = write_project(workdir, "bench", channel)
    build(engine, shape, spec, lambda m: print(f"  build: {m}", flush=True))
    engine.dispose()


@dataclass
class StepRun:
    seconds: float
    counts: Counter[str]
    cpu: dict[str, float]  # CPU seconds during the step: "engine" (+ workers), "sandbox"

    @property
    def rate(self) -> float:
        return self.counts["sent"] / self.seconds


def _timed_step(
    contexts: list[EngineContext], spec: JourneySpec, worker_pids: set[int], sandbox_pid: int
) -> StepRun:
    cpu_before = _cpu(worker_pids, sandbox_pid)
    started = time.perf_counter()
    counts = _run_partitioned(contexts, spec, NOW)
    seconds = time.perf_counter() - started
    cpu = {k: v - cpu_before[k] for k, v in _cpu(worker_pids, sandbox_pid).items()}
    return StepRun(seconds, counts, cpu)


def _forget_sends(sessions: Any, spec: JourneySpec, sandbox: SandboxClient) -> None:
    """Make the step's messages due again: drop its ledger rows and the sandbox's record."""
    with write_session(sessions) as session:
        session.execute(text("DELETE FROM deliveries WHERE journey_name = :j"), {"j": spec.journey})
    sandbox.reset()


def _run_partitioned(
    contexts: list[EngineContext], spec: JourneySpec, now: datetime
) -> Counter[str]:
    """The step's partitions in parallel threads, as the Prefect flow maps them."""
    step = spec.steps[0]
    with write_session(contexts[0].sessions) as session:
        journey_id = ensure_journey(session, spec, now).id
    count = len(contexts)
    with ThreadPoolExecutor(count) as pool:
        results = pool.map(
            lambda i: run_step(contexts[i], spec, step, now, journey_id, Partition(i, count)),
            range(count),
        )
        total: Counter[str] = Counter()
        for counts in results:
            total.update(outcome_labels(counts))
    return total


def _exactly_once(sandbox: SandboxClient, channel: str, expected: int) -> str:
    """From the sandbox's own delivery counts (per idempotency key), not by downloading
    every message: at 100,000 messages that download was the engine process's peak memory."""
    stats = sandbox.stats()
    counts = stats["channels"].get(channel, {})
    delivered = int(counts.get("delivered", 0))  # messages the sandbox holds as sent
    duplicates = int(counts.get("duplicates", 0))  # deliveries beyond the first, per key
    keys = delivered - duplicates
    once = keys - int(counts.get("duplicate_keys", 0))
    verdict = "yes" if once == expected == keys else "NO"
    return f"{verdict}: {keys:,} keys, {once:,} delivered once, duplicates {duplicates}"


@task(cache_policy=NO_CACHE)
def one_message(ctx: EngineContext, spec: JourneySpec, due: Any, now: datetime) -> dict[str, int]:
    step = spec.steps[0]
    return dict(outcome_labels(process_batch(ctx, spec, step, ctx.channels[step.send], [due], now)))


@flow(name="bench-naive")
def naive_flow(ctx: EngineContext, spec: JourneySpec, now: datetime) -> int:
    step = spec.steps[0]
    with ctx.sessions() as session:
        due = select_due(session, spec, step, now, None, after=0, limit=10**9)
    sent = 0
    for one in due:
        sent += one_message(ctx, spec, one, now).get("sent", 0)
    return sent


def _naive(sessions: Any, args: argparse.Namespace, sandbox_url: str, bench: JourneySpec) -> float:
    """The same work on `--naive` customers of another journey, one Prefect task each."""
    spec = write_project(args.workdir, "bench-naive", args.channel)
    _enroll_slice(sessions, spec, args.naive)
    ctx = engine_context(sessions, args.workdir, sandbox_url, batch_size=args.batch_size)
    started = time.perf_counter()
    sent = naive_flow(ctx, spec, NOW)
    return sent / (time.perf_counter() - started)


def _enroll_slice(sessions: Any, spec: JourneySpec, n: int) -> None:
    """Enroll customers 1..n (due two days ago) into another journey, directly in SQL."""
    with write_session(sessions) as session:
        journey = ensure_journey(session, spec, NOW)  # activated now: no entrants of its own
        session.execute(
            text(
                "INSERT INTO enrollments (journey_id, journey_name, customer_id, entry_key, "
                "entered_at, enrolled_at, status, holdout) SELECT :jid, :name, o.customer_id, "
                "'order:' || CAST(o.id AS VARCHAR(20)), o.paid_at, o.paid_at, 'active', false "
                "FROM orders o WHERE o.id <= :n"
            ),
            {"jid": journey.id, "name": spec.journey, "n": n},
        )


def _fault_run(
    url: str, args: argparse.Namespace, sandbox_url: str, sandbox: SandboxClient
) -> list[tuple[str, str]]:
    """`--faults` messages on the service account (token expiry applies; it dedupes on
    client_msg_id = the idempotency key) with every fault on, the first tick killed."""
    engine = make_engine(url)
    spec = write_project(args.workdir, "bench-faults", "service_account")
    _enroll_slice(make_sessionmaker(engine), spec, args.faults)
    engine.dispose()
    sandbox.set_faults(**FAULTS)
    started = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "bench.driver",
        "--database-url",
        url,
        "--workdir",
        str(args.workdir),
        "--journey",
        "bench-faults",
        "--channel",
        "service_account",
        "--sandbox-url",
        sandbox_url,
        "--batch-size",
        "200",
        "--timeout",
        "0.3",
    ]
    first = subprocess.Popen([*command, "--now", NOW.isoformat()], stdout=subprocess.DEVNULL)
    while first.poll() is None and _delivered(sandbox) < args.faults // 3:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = _delivered(sandbox)
    ticks = 1
    moment = NOW
    while _delivered(sandbox) < args.faults and ticks < 40:
        moment += timedelta(minutes=15)  # past the lease and the retry backoff
        subprocess.run(
            [*command, "--now", moment.isoformat()], check=True, stdout=subprocess.DEVNULL
        )
        ticks += 1
    seconds = time.perf_counter() - started
    keys = Counter(
        m["key"] for m in sandbox.messages(channel="service_account") if m["status"] == "sent"
    )
    stats = sandbox.stats()
    once = sum(1 for n in keys.values() if n == 1)
    fired = stats.get("faults_fired", {})
    return [
        (
            f"faults: {args.faults:,} messages, killed after {killed_at:,} delivered",
            f"{ticks} ticks, {seconds:.1f} s",
        ),
        ("  faults fired at the sandbox", str(fired)),
        (
            "  exactly once by idempotency key",
            f"{'yes' if once == len(keys) == args.faults else 'NO'}: {once:,} of "
            f"{args.faults:,} once, {len(keys) - once} duplicated, "
            f"{args.faults - len(keys)} missing",
        ),
    ]


FAULTS: dict[str, Any] = {
    "seed": 7,
    "hang_seconds": 0.6,
    "expire_tokens_every": 500,
    "rules": [
        {"endpoint": "*", "kind": "timeout", "rate": 0.02},
        {"endpoint": "*", "kind": "http", "status": 500, "rate": 0.2},
        {"endpoint": "*", "kind": "rate_limit", "retry_after": 0.05, "rate": 0.05},
    ],
}


def _delivered(sandbox: SandboxClient) -> int:
    channel = sandbox.stats()["channels"].get("service_account", {})
    return int(channel.get("messages", 0))


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_memory() -> str:
    return f"{_peak_kb() / 1024:,.0f} MB"


def _cpu(worker_pids: set[int], sandbox_pid: int) -> dict[str, float]:
    """CPU seconds so far: this process and its partition workers ("engine"), the sandbox."""
    mine = time.process_time()
    return {
        "engine": mine + sum(cpu_seconds(pid) for pid in worker_pids),
        "sandbox": cpu_seconds(sandbox_pid),
    }


def _process_peak_kb(pid: int) -> int:
    """A live process's peak resident memory (Linux /proc VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _secs(started: float) -> str:
    return f"{time.perf_counter() - started:.1f} s"


def _reset_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    main()
