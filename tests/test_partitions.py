"""A step split into partitions, run by the real Prefect flow over HTTP to the sandbox: in
threads (the default) and in worker processes (siyu/engine/partition_workers.py). Every message
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


def tick(now: datetime, sandbox: RunningSandbox, processes: bool) -> Any:
    return flow_tick(now, sandbox, partitions=2, processes=processes)


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_partitioned_steps_send_every_message_once(
    processes: bool,
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    sessions: sessionmaker[Session],
    shop: Shop,
) -> None:
    client = SandboxClient(sandbox.url)
    client.set_faults(auto_confirm=True)
    buyers = [shop.customer(f"顾客{i}") for i in range(12)]
    tick(local(0), sandbox, processes)
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    state = tick(local(0, 11), sandbox, processes)
    assert state.is_completed()
    assert state.result()["join-group"]["pending"] == 12  # summed over both partitions
    expected = {"enroll", "day3-care[0/2]", "day3-care[1/2]"}
    names = {run.name for run in task_runs(state.state_details.flow_run_id, expected)}
    assert expected <= names and "day3-care" not in names  # mapped, one task run per partition
    for day, hour in ((0, 12), (1, 11), (1, 12), (7, 11), (7, 12), (14, 11), (14, 12)):
        assert tick(local(day, hour), sandbox, processes).is_completed()

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
