"""Messages per second through the deployed flow (run on purpose; not part of the test suite):

    python -m bench.flow_tick --customers 200000 --due 20000
    python -m bench.flow_tick --database-url postgresql+psycopg://... --processes
    python -m bench.flow_tick --customers 50000 --due 5000 --repeat 1   # the small form

`bench.run` times the send step alone; this times what a deployment runs: one `journey_tick`
flow run (every phase as a Prefect task, the step's partitions mapped on the flow's task
runner, the artifacts) against the channel sandbox in its own process, on the Prefect API of
the environment (else Prefect's ephemeral one). The journey passes the flow's own content
check (its SMS carries 【签名】 and 回T退订); channels.yaml is the project's own, its SMS sent
through SendBatchSms (`batch_api: true`, precheck after a failure), as a brand sending in
volume would set it. Each repeat forgets the sends and ticks again; every message is counted
once at the sandbox. Prints each run's rate, its phases' seconds (from Prefect's task runs)
and the median.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.data import Shape, build
from bench.idle_tick import write_live_project
from siyu.settings import export


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_tick")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--due", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--processes", action="store_true", help="partitions in worker processes (else threads)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="ticks of the same due messages")
    parser.add_argument("--database-url", help="default: a SQLite file in --workdir")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/siyu-flow-tick"))
    args = parser.parse_args(argv)

    shutil.rmtree(args.workdir, ignore_errors=True)
    project = args.workdir / "project"
    url = args.database_url or f"sqlite:///{args.workdir / 'bench.db'}"
    export(project_dir=str(project), database_url=url)

    from prefect.client.orchestration import get_client
    from sqlalchemy import text

    from bench.run import NOW, _exactly_once, _forget_sends, _reset_postgres
    from bench.sandbox_process import sandbox_process
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
    mode = "worker processes" if args.processes else "threads"
    with get_client(sync_client=True) as client:  # Prefect's API up before the clock starts
        client.hello()
    rates: list[float] = []
    with sandbox_process() as (sandbox_url, _), SandboxClient(sandbox_url, timeout=120) as sandbox:
        for run in range(args.repeat):
            if run:  # the same messages due again: no ledger rows, enrollments not completed
                _forget_sends(sessions, spec, sandbox)
                with write_session(sessions) as session:
                    session.execute(
                        text("UPDATE enrollments SET status = 'active' WHERE journey_name = :j"),
                        {"j": spec.journey},
                    )
            started = time.perf_counter()
            state = journey_tick(
                journey=spec.journey,
                now=NOW.isoformat(),
                channel_base_url=sandbox_url,
                partitions=args.partitions,
                processes=args.processes,
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
            print(f"  exactly once at the sandbox: {_exactly_once(sandbox, 'sms', args.due)}")
            print("  phases (Prefect task runs, seconds): " + _phases(state))
    engine.dispose()
    print(f"median of {len(rates)}: {statistics.median(rates):,.0f} msg/s")


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
