"""A step split into partitions, run by the real Prefect flow over HTTP to the sandbox, on
every runner (tasks/partition_runners.py): threads (the default), siyu's worker processes,
Prefect's ProcessPoolTaskRunner and prefect-dask on a temporary local cluster. Every message
is sent exactly once, counted at the provider's side, and each partition is a task run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import Delivery
from tests.conftest import Shop, local
from tests.test_flow_end_to_end import task_runs
from tests.test_flow_end_to_end import tick as flow_tick

STEPS = ("join-group", "day3-care", "day7-content", "day14-repurchase")
LATER_TICKS = ((0, 12), (1, 11), (1, 12), (7, 11), (7, 12), (14, 11), (14, 12))


def warnings_of(flow_runs: list[Any]) -> list[str]:
    """The warnings the flow runs (and their task runs) logged, as the Prefect UI shows them:
    sent to the API, this process's log queue flushed first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=flow_runs), level=LogFilterLevel(ge_=30)
            ),
            limit=200,
        )
    return [log.message for log in logs]


def tick(now: datetime, sandbox: RunningSandbox, runner: str) -> Any:
    return flow_tick(now, sandbox, partitions=2, runner=runner)


def _twelve_first_buyers(runner: str, sandbox: RunningSandbox, shop: Shop) -> tuple[list[int], Any]:
    """The journey switched on, then twelve first orders and the tick that enrolls them and
    sends their group invitations: the buyers and that tick's state."""
    buyers = [shop.customer(f"顾客{i}") for i in range(12)]
    tick(local(0), sandbox, runner)
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    state = tick(local(0, 11), sandbox, runner)
    assert state.is_completed()
    assert state.result()["join-group"]["pending"] == 12  # summed over both partitions
    return buyers, state


@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_partitioned_steps_send_every_message_once(
    runner: str,
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    sessions: sessionmaker[Session],
    shop: Shop,
) -> None:
    client = SandboxClient(sandbox.url)
    client.set_faults(auto_confirm=True)
    buyers, state = _twelve_first_buyers(runner, sandbox, shop)
    expected = {"enroll", "day3-care[0/2]", "day3-care[1/2]"}
    names = {run.name for run in task_runs(state.state_details.flow_run_id, expected)}
    assert expected <= names and "day3-care" not in names  # mapped, one task run per partition
    flow_runs = [state.state_details.flow_run_id]
    for day, hour in LATER_TICKS:
        later = tick(local(day, hour), sandbox, runner)
        assert later.is_completed()
        flow_runs.append(later.state_details.flow_run_id)

    with sessions() as session:
        statuses = {
            (r[0], r[1]): r[2] if r[2] == "sent" else f"{r[2]} {r[3]}"
            for r in session.execute(
                select(Delivery.customer_id, Delivery.step_id, Delivery.status, Delivery.reason)
            )
        }
    assert {statuses[(b, s)] for b in buyers for s in STEPS} == {"sent"}, statuses
    assert client.stats()["duplicates"] == []
    keys = [m["key"] for m in client.messages()]
    assert len(keys) == len(set(keys)) == 12 * 4
    # nine flow runs, each with its own partitions (threads or worker processes), one token
    # per app between them: shared through provider_tokens
    token_calls = [len(client.calls(endpoint=e)) for e in ("wecom.gettoken", "wechat.stable_token")]
    assert token_calls == [1, 1]
    # a partition in a worker thread runs without a timeout Prefect could not enforce (it
    # warned on every partition of every tick)
    warned = [log for log in warnings_of(flow_runs) if "worker thread" in log]
    assert not warned, warned


@pytest.mark.parametrize("runner", ["process-pool", "dask"])
def test_prefect_runners_send_a_partitioned_step_once(
    runner: str,
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    shop: Shop,
) -> None:
    """Prefect's own runners, on one step (their processes start in every flow run, seconds
    on 2 cores; the whole journey is proved on the threads and siyu's processes above, and on a
    Dask cluster in tests/test_dask_cluster.py)."""
    client = SandboxClient(sandbox.url)
    _, state = _twelve_first_buyers(runner, sandbox, shop)
    expected = {"join-group[0/2]", "join-group[1/2]"}
    names = {run.name for run in task_runs(state.state_details.flow_run_id, expected)}
    assert expected <= names
    keys = [m["key"] for m in client.messages()]
    assert len(keys) == len(set(keys)) == 12 and client.stats()["duplicates"] == []


def _no_secret_context() -> Any:
    from siyu.errors import ConfigError

    raise ConfigError("SIYU_SMS_SECRET is not set")


def test_a_worker_error_reaches_the_flow_as_itself(tmp_path: Any) -> None:
    """A worker that cannot build its context (a missing secret, say) fails the partition
    with that error, so Prefect's retry and the operator see the cause."""
    from siyu.engine.partition_workers import PartitionWorkers
    from siyu.engine.send_step import Partition
    from siyu.errors import ConfigError
    from tests.conftest import canonical_journey
    from tests.recording_channel import recording_channels

    spec = canonical_journey(recording_channels())
    with PartitionWorkers(_no_secret_context, 2) as workers:
        with pytest.raises(ConfigError, match="SIYU_SMS_SECRET is not set"):
            workers.run_step(spec, spec.steps[0], local(1), None, Partition(0, 2))


def _bad_journey_context() -> Any:
    from siyu.language.problems import Problem, SpecError

    raise SpecError([Problem("journeys/j.yaml", 3, 9, "unknown-channel", "no channel 'wecon'")])


def _channel_down_context() -> Any:
    from siyu.channels.base import ChannelError

    raise ChannelError("sms", "unreachable", retryable=False)  # its __init__ takes two args


def test_worker_errors_that_pickling_cannot_rebuild_do_not_break_the_pool(tmp_path: Any) -> None:
    """A SpecError reaches the flow as itself, with its problems; an error whose class
    cannot be rebuilt from its message arrives as PartitionWorkerError naming it, and the
    pool still runs the next partition (before, both broke the pool: BrokenProcessPool)."""
    from siyu.engine.partition_workers import PartitionWorkerError, PartitionWorkers
    from siyu.engine.send_step import Partition
    from siyu.language.problems import SpecError
    from tests.conftest import canonical_journey
    from tests.recording_channel import recording_channels

    spec = canonical_journey(recording_channels())
    with PartitionWorkers(_bad_journey_context, 2) as workers:
        with pytest.raises(SpecError, match="journeys/j.yaml:3:9") as raised:
            workers.run_step(spec, spec.steps[0], local(1), None, Partition(0, 2))
        assert raised.value.problems[0].code == "unknown-channel"
    with PartitionWorkers(_channel_down_context, 2) as workers:
        for index in (0, 1):
            with pytest.raises(
                PartitionWorkerError, match="siyu.channels.base.ChannelError: channel 'sms'"
            ):
                workers.run_step(spec, spec.steps[0], local(1), None, Partition(index, 2))


def _nothing() -> Any:
    return None


def test_warm_up_starts_every_worker() -> None:
    """The benchmark times a step after warm_up(): every worker must be running by then."""
    from siyu.engine.partition_workers import PartitionWorkers

    with PartitionWorkers(_nothing, 3) as workers:
        assert len(workers.warm_up()) == 3


@pytest.mark.parametrize("runner", ["process-pool", "dask"])
def test_prefect_runners_refuse_the_ephemeral_api(runner: str, tmp_path: Any) -> None:
    """On Prefect's ephemeral API each worker process would start an API of its own and report
    its task runs there (seen: three throwaway servers, 20 s of a 23 s tick): refused, naming
    the setting."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from siyu.errors import ConfigError
    from tasks.context import TickSettings
    from tasks.partition_runners import partition_runner

    settings = TickSettings(str(tmp_path), "sqlite://", partitions=2, runner=runner)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(ConfigError, match=f"runner '{runner}' needs a Prefect server"):
            with partition_runner(settings):
                pass


def test_a_partition_polls_only_what_earlier_ticks_left_pending(
    tmp_path: Any, sessions: sessionmaker[Session], shop: Shop, sandbox: RunningSandbox
) -> None:
    """Partition 0 of a step on a polling channel (WeCom, whose messages wait for a staff
    member) also asks the provider about the step's pending messages. When partition 1 has just
    sent its own, as Prefect's process pool can order them, those are this tick's and were
    counted by partition 1: partition 0 must not count them again (seen: 18 pending for 12)."""
    from bench.scenario import engine_context
    from siyu.engine.send_step import Partition, run_step
    from siyu.engine.tick import run_tick
    from tests.bench_brand import one_step_brand

    spec = one_step_brand(tmp_path, sessions, shop, "invite", "wecom", 6)
    ctx = engine_context(sessions, tmp_path, sandbox.url)
    run_tick(ctx, spec, local(0, 11))  # enrolls; the step is due a day later
    step = spec.steps[0]
    second = run_step(ctx, spec, step, local(1, 12), partition=Partition(1, 2))
    first = run_step(ctx, spec, step, local(1, 12), partition=Partition(0, 2))
    assert sum(second.values()) + sum(first.values()) == 6, (second, first)
    assert len(SandboxClient(sandbox.url).messages()) == 6
