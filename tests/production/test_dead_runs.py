"""A deployed run that dies must not stay Running: the UI would show a tick that is not
happening, and the journey's one concurrency slot (prefect.yaml: limit 1, CANCEL_NEW) would
make every next tick a cancelled collision.

- The run's process dies under a live worker: the worker marks it Crashed.
- The machine dies (the worker and the run's process together): nobody is left to say so.
  Deployed runs send heartbeats (`siyu deploy` puts PREFECT_FLOWS_HEARTBEAT_FREQUENCY in the
  work pool) and `siyu watchdog`'s automation marks a run whose heartbeats stopped Crashed.

Both against the session's real server (tests/production/conftest.py), with the deployments
made by `prefect deploy` from the brand's prefect.yaml.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.production.deployed_brand import (
    JOURNEY,
    Deployed,
    pause,
    process_of_flow_run,
    siyu,
)
from tests.production.prefect_server import start_worker, stop, wait_until

pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("prefect-server")]

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
# The watchdog's silence in this test: the shortest it allows (heartbeats come every 30 s).
SILENCE = 40


def start_run(deployed: Deployed, deployment: str) -> str:
    """`prefect deployment run`, as an operator starts a tick by hand; the run's id."""
    out = deployed.server.prefect(
        deployed.project, "deployment", "run", f"journey-tick/{deployment}", env=deployed.env
    )
    found = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert found, out
    return found.group(1)


def flow_run(deployed: Deployed, run_id: str) -> dict[str, Any]:
    return dict(deployed.server.api("GET", f"/flow_runs/{run_id}"))


def ended(deployed: Deployed, run_id: str) -> dict[str, Any] | None:
    run = flow_run(deployed, run_id)
    return run if run["state_type"] in FINAL else None


def running_process(deployed: Deployed, run_id: str) -> int | None:
    """The pid of the run's process once the run is RUNNING; None if the run ended first (a
    tick with nothing due takes a few seconds)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        pid = process_of_flow_run(run_id)
        state = flow_run(deployed, run_id)["state_type"]
        if state in FINAL:
            return None
        if pid is not None and state == "RUNNING":
            return pid
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never ran: {flow_run(deployed, run_id)['state_type']}")


def quiet(deployed: Deployed) -> None:
    pause(deployed)
    wait_until(
        lambda: not deployed.flow_runs(state={"type": {"any_": ["RUNNING", "PENDING"]}}),
        180,
        "running ticks to finish",
    )


def test_a_deployed_run_whose_process_dies_is_crashed_and_frees_its_concurrency_slot(
    deployed: Deployed, scheduled_run: dict[str, Any]
) -> None:
    """The worker sees the run's process die and marks it Crashed, so the next run is not
    cancelled as a collision."""
    quiet(deployed)
    for _ in range(3):
        victim = start_run(deployed, JOURNEY)
        pid = running_process(deployed, victim)
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended between the look and the kill
            continue
        break
    else:
        raise AssertionError("three runs ended before they could be killed")

    dead = wait_until(
        lambda: ended(deployed, victim), 120, "the killed run to end", deployed.worker_log
    )
    assert dead["state_type"] == "CRASHED", dead["state"]

    next_run = start_run(deployed, JOURNEY)
    finished = wait_until(
        lambda: ended(deployed, next_run), 240, "the next run to end", deployed.worker_log
    )
    assert finished["state_type"] == "COMPLETED", finished["state"]  # not CANCELLED: slot free


def doomed_deployment(deployed: Deployed, tmp_path: Path) -> str:
    """The brand's deployment of the journey again, on a work pool of its own (`doomed`), so
    that killing its worker leaves the session's worker alone; `prefect deploy` from a copy of
    the brand's prefect.yaml, as written by `siyu deploy`."""
    yaml = YAML()
    doc = yaml.load((deployed.project / "prefect.yaml").read_text(encoding="utf-8"))
    pool = doc["definitions"]["work_pools"]["siyu"]
    pool["name"] = "doomed"
    entry = next(d for d in doc["deployments"] if d["name"] == JOURNEY)
    entry["name"] = f"doomed-{JOURNEY}"
    entry.pop("schedules", None)
    doc["deployments"] = [entry]
    prefect_file = tmp_path / "prefect-doomed.yaml"
    with prefect_file.open("w", encoding="utf-8") as out:
        yaml.dump(doc, out)
    server, env = deployed.server, deployed.env
    server.prefect(deployed.project, "work-pool", "create", "doomed", "--type", "process", env=env)
    server.prefect(
        deployed.project, "deploy", "--all", "--prefect-file", str(prefect_file), env=env
    )
    return str(entry["name"])


def heartbeat_arrived(deployed: Deployed, run_id: str) -> bool:
    events = deployed.server.api(
        "POST",
        "/events/filter",
        json={
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            },
            "limit": 1,
        },
    )
    return bool(events["events"])


def frozen_after_a_heartbeat(deployed: Deployed, run_id: str) -> int | None:
    """The run's process, stopped (SIGSTOP) once the server holds one of its heartbeats: a
    machine that died after its run began. None if the run ended first."""
    pid = running_process(deployed, run_id)
    for _ in range(20):
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return None
        deadline = time.monotonic() + 15  # the server persists events every few seconds
        while time.monotonic() < deadline:
            if heartbeat_arrived(deployed, run_id):
                return pid
            time.sleep(0.5)
        os.kill(pid, signal.SIGCONT)  # stopped before its first heartbeat left: let it go on
        time.sleep(0.3)
        pid = process_of_flow_run(run_id)
    return None


def test_a_run_whose_machine_dies_is_crashed_by_the_watchdog_and_frees_its_slot(
    deployed: Deployed, scheduled_run: dict[str, Any], tmp_path: Path
) -> None:
    """The worker and the run's process die together (SIGKILL, after the run's heartbeat):
    `siyu watchdog`'s automation marks the run Crashed after its silence, and the next run,
    on a new worker, completes: not cancelled as a collision, and long before Prefect's lease
    on the slot (300 s) would have freed it anyway."""
    quiet(deployed)
    out = siyu(deployed.project, deployed.env, "watchdog", "--silence", str(SILENCE))
    assert "automation 'siyu: crash runs whose heartbeats stopped'" in out
    again = siyu(deployed.project, deployed.env, "watchdog", "--silence", str(SILENCE))
    assert again.startswith("updated")  # idempotent: one automation, not two
    automations = deployed.server.api("POST", "/automations/filter", json={})
    assert [a["name"] for a in automations].count("siyu: crash runs whose heartbeats stopped") == 1

    deployment = doomed_deployment(deployed, tmp_path)
    job_env = deployed.server.api("GET", f"/deployments/name/journey-tick/{deployment}")[
        "job_variables"
    ]["env"]
    assert job_env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # written by `siyu deploy`

    worker, log = start_worker(deployed.server, "doomed", deployed.project, deployed.env)
    try:
        for _ in range(3):
            victim = start_run(deployed, deployment)
            pid = frozen_after_a_heartbeat(deployed, victim)
            if pid is not None:
                break
        else:
            raise AssertionError("three runs ended before their machine could die")
        worker.kill()
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait(timeout=30)
    finally:
        stop(worker)
    assert flow_run(deployed, victim)["state_type"] == "RUNNING"  # nobody left to say otherwise

    dead = wait_until(
        lambda: ended(deployed, victim), SILENCE + 90, "the watchdog to crash the run", log
    )
    assert dead["state_type"] == "CRASHED", dead["state"]
    assert f"no heartbeat for {SILENCE} s" in dead["state"]["message"]

    replacement, log = start_worker(deployed.server, "doomed", deployed.project, deployed.env)
    try:
        next_run = start_run(deployed, deployment)
        finished = wait_until(lambda: ended(deployed, next_run), 240, "the next run to end", log)
    finally:
        stop(replacement)
    assert finished["state_type"] == "COMPLETED", finished["state"]  # not CANCELLED: slot free
    assert time.monotonic() - killed_at < 300  # freed by the crash, not by the lease's end
