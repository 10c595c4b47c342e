"""The benchmark: messages per second through the deployed flow (run on purpose; not part of
the test suite):

    python -m bench.run --customers 200000 --due 20000
    python -m bench.run --database-url postgresql+psycopg://... --runner processes
    python -m bench.run --runner dask [--dask-address tcp://127.0.0.1:8786]
    python -m bench.run --customers 50000 --due 5000 --repeat 1 --check   # the small form

It times what a deployment runs (`bench.step` times the engine's send step alone): one
`journey_tick` flow run (every phase as a Prefect task, the step's partitions mapped on
the flow's task runner, the artifacts) against the channel sandbox in its own process, on
the Prefect API of the environment (else Prefect's ephemeral one). The journey passes the
flow's own content check (its SMS carries 【签名】 and 回T退订); channels.yaml is the project's
own, its SMS sent through SendBatchSms (`batch_api: true`, precheck after a failure), as a
brand sending in volume would set it. Each repeat forgets the sends and ticks again; every
message is counted once at the sandbox. Prints each run's rate, its phases' seconds (from
Prefect's task runs) and the median; then, on the same database and Prefect API, `--idle`
flow runs of the same tick once nothing is left due (their median), and the naive way, one
Prefect task per message on `--naive` customers of another journey, with the ratio.

CI runs the small form on PostgreSQL after the suite (.ci/run): its figures are for comparing
runs; `--check` fails it when a message was not delivered exactly once, never on a time.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from bench.data import Shape, build
from bench.idle_tick import write_live_project
from siyu.settings import PartitionRunner, export


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--due", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--runner",
        choices=get_args(PartitionRunner),
        default="threads",
        help="where the partitions run (tasks/partition_runners.py)",
    )
    parser.add_argument(
        "--dask-address",
        help="runner dask: this scheduler; default: a local cluster of one worker process per "
        "partition, started before the clock and kept for every run, as a deployment's would be",
    )
    parser.add_argument("--repeat", type=int, default=2, help="ticks of the same due messages")
    parser.add_argument("--idle", type=int, default=3, help="idle ticks timed after the runs")
    parser.add_argument(
        "--naive", type=int, default=300, help="messages sent one Prefect task each (0: none)"
    )
    parser.add_argument("--database-url", help="default: a SQLite file in --workdir")
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        help="PostgreSQL with pg_stat_statements loaded: print the N statements that took the "
        "server longest in the last run, with calls and time per message",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a run did not deliver every due message exactly once (CI's small "
        "form: it prints figures and fails on a wrong result, never on a time)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/siyu-flow-tick"))
    args = parser.parse_args(argv)

    shutil.rmtree(args.workdir, ignore_errors=True)
    project = args.workdir / "project"
    url = args.database_url or f"sqlite:///{args.workdir / 'bench.db'}"
    export(project_dir=str(project), database_url=url)

    from prefect.client.orchestration import get_client
    from sqlalchemy import text

    from bench.sandbox_process import sandbox_process
    from bench.step import NOW, _exactly_once, _forget_sends, _reset_postgres
    from flows.journey_flow import journey_tick
    from siyu.sandbox.client import SandboxClient
    from siyu.storage.engine import make_engine, make_sessionmaker, write_session

    if args.database_url:
        _reset_postgres(url)
    spec = write_live_project(project, batched_sms=True)
    engine = make_engine(url)
    started = time.perf_counter()
    build(engine, Shape(args.customers, args.due, 0, NOW), spec, lambda _: None)
    print(f"data: {args.customers:,} customers, {args.due:,} due, built in ", end="")
    print(f"{time.perf_counter() - started:.1f} s ({url})")
    sessions = make_sessionmaker(engine)
    mode = args.runner
    with get_client(sync_client=True) as client:  # Prefect's API up before the clock starts
        client.hello()
    rates: list[float] = []
    with (
        sandbox_process() as (sandbox_url, _),
        SandboxClient(sandbox_url, timeout=120) as sandbox,
        _dask_cluster(args) as dask_address,
    ):
        if dask_address:
            export(dask_address=dask_address)  # SIYU_DASK_ADDRESS, as a deployment sets it
        for run in range(args.repeat):
            if run:  # the same messages due again: no ledger rows, enrollments not completed
                _forget_sends(sessions, spec, sandbox)
                with write_session(sessions) as session:
                    session.execute(
                        text("UPDATE enrollments SET status = 'active' WHERE journey_name = :j"),
                        {"j": spec.journey},
                    )
            if args.statements:
                _reset_statements(engine)
            started = time.perf_counter()
            state = journey_tick(
                journey=spec.journey,
                now=NOW.isoformat(),
                channel_base_url=sandbox_url,
                partitions=args.partitions,
                runner=args.runner,
                throttle=False,
                return_state=True,
            )
            seconds = time.perf_counter() - started
            results: dict[str, dict[str, int]] = state.result()
            sent = results["hello"].get("sent", 0)
            rates.append(sent / seconds)
            print(
                f"run {run + 1}: {sent:,} sent in {seconds:.1f} s through journey_tick "
                f"({args.partitions} partitions in {mode}): {sent / seconds:,.0f} msg/s"
            )
            verdict = _exactly_once(sandbox, "sms", args.due)
            print(f"  exactly once at the sandbox: {verdict}")
            if args.check and (not verdict.startswith("yes") or sent != args.due):
                raise SystemExit(f"run {run + 1}: {sent:,} sent of {args.due:,} due; {verdict}")
            print("  phases (Prefect task runs, seconds): " + _phases(state))
        rate = statistics.median(rates)
        print(f"median of {len(rates)}: {rate:,.0f} msg/s")
        if args.statements:
            _print_statements(engine, args.statements, args.due)
        if args.idle:
            idle = _idle_ticks(args, spec.journey, sandbox_url)
            print(f"idle tick (nothing left due), median of {args.idle}: {idle:.2f} s")
        if args.naive:
            naive = _naive(sessions, args, sandbox_url)
            print(f"naive, one Prefect task per message ({args.naive:,}): {naive:,.1f} msg/s")
            print(f"  journey_tick ÷ naive: {rate / naive:,.0f}×")
    engine.dispose()


def _reset_statements(engine: Any) -> None:
    from sqlalchemy import text

    with engine.begin() as connection:  # the bench's reset dropped the schema and the extension
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        connection.execute(text("SELECT pg_stat_statements_reset()"))


def _print_statements(engine: Any, top: int, messages: int) -> None:
    """The server's side of the last run (pg_stat_statements): every statement's calls and
    time, per message; the first line is the whole."""
    from sqlalchemy import text

    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY total_exec_time DESC"
            )
        ).all()
    calls = sum(row.calls for row in rows)
    total = sum(row.total_exec_time for row in rows)
    print(
        f"server (pg_stat_statements): {calls:,} statements, {total / 1000:.1f} s; per "
        f"message {calls / messages:.2f} statements, {total * 1000 / messages:.0f} µs"
    )
    for row in rows[:top]:
        query = " ".join(row.query.split())[:110]
        print(
            f"  {row.total_exec_time / 1000:6.2f} s {row.calls:7,} calls "
            f"{row.calls / messages:5.2f}/msg {row.rows:9,} rows  {query}"
        )


def _idle_ticks(args: argparse.Namespace, journey: str, sandbox_url: str) -> float:
    """Flow runs of the same tick again: every message is sent, nothing is due."""
    from bench.step import NOW
    from flows.journey_flow import journey_tick

    seconds = []
    for _ in range(args.idle):
        started = time.perf_counter()
        results = journey_tick(
            journey=journey,
            now=NOW.isoformat(),
            channel_base_url=sandbox_url,
            partitions=args.partitions,
            runner=args.runner,
            throttle=False,
        )
        seconds.append(time.perf_counter() - started)
        assert not results["hello"].get("sent"), f"an idle tick sent: {results}"
    return statistics.median(seconds)


def _naive(sessions: Any, args: argparse.Namespace, sandbox_url: str) -> float:
    """One Prefect task per message (bench.step's naive flow), through the same API, on
    `--naive` customers enrolled in another journey."""
    from bench.scenario import engine_context, write_project
    from bench.step import NOW, _enroll_slice, naive_flow

    spec = write_project(args.workdir / "naive", "bench-naive", "sms")
    _enroll_slice(sessions, spec, args.naive)
    ctx = engine_context(sessions, args.workdir / "naive", sandbox_url)
    try:
        started = time.perf_counter()
        sent = naive_flow(ctx, spec, NOW)
        return sent / (time.perf_counter() - started)
    finally:
        for channel in ctx.channels.values():
            channel.close()


@contextmanager
def _dask_cluster(args: argparse.Namespace) -> Iterator[str | None]:
    """The scheduler the dask runner sends its partitions to: the one given, or a local
    cluster (one single-threaded worker process per partition) for the whole benchmark."""
    if args.runner != "dask" or args.dask_address:
        yield args.dask_address
        return
    from distributed import Client, LocalCluster

    with (
        LocalCluster(  # type: ignore[no-untyped-call]  # distributed ships no annotations here
            n_workers=args.partitions,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster.scheduler_address) as client,  # type: ignore[no-untyped-call]
    ):
        # a long-lived cluster's workers have imported the tasks before a tick comes
        client.run(importlib.import_module, "tasks.phases")
        yield str(cluster.scheduler_address)


def _phases(state: Any) -> str:
    """Each task run of the flow run and its run time, in the order they started."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    runs.sort(key=lambda run: str(run.start_time or run.expected_start_time))
    return ", ".join(f"{run.name} {run.total_run_time.total_seconds():.2f}" for run in runs)


if __name__ == "__main__":
    main()
