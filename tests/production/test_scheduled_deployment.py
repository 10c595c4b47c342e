"""The production path, the way a brand runs it: a real `prefect server` with its scheduler, a
process work pool and worker, deployments made by `siyu deploy` and `prefect deploy --all`
from a copy of the repository, and a tick **created by the scheduler** that the worker runs to
Completed, its messages arriving at the channel sandbox over HTTP. Then the run as the UI
shows it (headless Chromium), and a journey broken after deploy failing its run with the
problems as file:line:col, sending nothing.

One server for the module (it costs 20-50 s to start). The test's copy of the project differs
from the repository only where a test must be quick and independent of the clock: one
journey, an interval schedule of 15 s, no quiet hours (CI may run at night in Shanghai), a
60-day entry lookback so the first tick has entrants, and a broken alerts.yaml whose warning
(from siyu's own logger) must reach the run's logs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import create_engine, func, select

from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox, start_sandbox
from siyu.storage.models import Delivery
from tests.browser import run_chromium
from tests.production.prefect_server import (
    BIN,
    PrefectServer,
    clean_environment,
    running_server,
    running_worker,
    wait_until,
)
from tests.project_copy import copy_project

# One worker runs the whole module against its one server (--dist loadgroup). The fixtures are
# session-scoped: xdist may run another module's test between two of these, which would tear a
# module-scoped server down and start another. Tests that need the scheduler's first run wait
# for it through the `scheduled_run` fixture, in any order.
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("prefect-server")]

JOURNEY = "first-purchase-care"
STEPS = {"join-group", "day3-care", "day7-content", "day14-repurchase"}
PHASES = {"enroll", "goals", "exits", "complete"}


@dataclass
class Deployed:
    server: PrefectServer
    project: Path
    sandbox: RunningSandbox
    database_url: str
    env: dict[str, str]
    worker_log: Path

    def deployment_id(self, name: str = JOURNEY) -> str:
        deployment = self.server.api("GET", f"/deployments/name/journey-tick/{name}")
        return str(deployment["id"])

    def flow_runs(self, **flow_run_filter: Any) -> list[dict[str, Any]]:
        body = {
            "deployments": {"id": {"any_": [self.deployment_id()]}},
            "flow_runs": flow_run_filter,
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
        }
        return list(self.server.api("POST", "/flow_runs/filter", json=body))

    def sent_in_ledger(self) -> int:
        engine = create_engine(self.database_url)
        with engine.connect() as connection:
            count = connection.scalar(
                select(func.count())
                .select_from(Delivery)
                # the ledger's statuses of a message handed over ("delivered" is not one: the
                # status column now refuses values outside DeliveryStatus)
                .where(Delivery.status.in_(("sent", "pending")))
            )
        engine.dispose()
        return int(count or 0)


def siyu(project: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "siyu"), *args],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"siyu {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def shape_for_test(project: Path) -> None:
    """One journey, no quiet hours, a 60-day lookback; a broken alerts.yaml."""
    for other in (project / "journeys").glob("*.yaml"):
        if other.name != "first_purchase.yaml":
            other.unlink()
    journey = project / "journeys" / "first_purchase.yaml"
    text = journey.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^quiet_hours: .*$", "quiet_hours: null", text)
    text = text.replace('  where: "order_seq = 1"', '  where: "order_seq = 1"\n  lookback: 61d', 1)
    journey.write_text(text, encoding="utf-8")
    (project / "alerts.yaml").write_text("breaker: [not, a, mapping\n", encoding="utf-8")


def every_seconds(prefect_yaml: Path, deployment: str, seconds: int) -> None:
    """The deployment's cron replaced by an interval, as an operator may edit prefect.yaml."""
    yaml = YAML()
    doc = yaml.load(prefect_yaml.read_text(encoding="utf-8"))
    for entry in doc["deployments"]:
        if entry["name"] == deployment:
            entry["schedules"] = [{"interval": seconds}]
    with prefect_yaml.open("w", encoding="utf-8") as out:
        yaml.dump(doc, out)


@pytest.fixture(scope="session")
def brand_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import fresh_database_url

    with fresh_database_url(tmp_path_factory.mktemp("brand-db")) as url:
        yield url


@pytest.fixture(scope="session")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, brand_database_url: str
) -> Iterator[Deployed]:
    base = tmp_path_factory.mktemp("production")
    project = copy_project(base / "brand")
    shape_for_test(project)
    with start_sandbox() as sandbox:
        SandboxClient(sandbox.url).set_faults(auto_confirm=True)  # staff confirm WeCom tasks
        brand = clean_environment(
            PREFECT_HOME=str(base / "prefect"),
            SIYU_DATABASE_URL=brand_database_url,
            SIYU_CHANNEL_BASE_URL=sandbox.url,
        )

        def prepare_the_brand() -> None:  # the README's siyu commands: they need no server
            siyu(project, brand, "db", "upgrade")
            siyu(project, brand, "db", "seed", "--customers", "300", "--arrivals", "0")
            siyu(project, brand, "deploy")
            every_seconds(project / "prefect.yaml", JOURNEY, 15)

        with running_server(base / "prefect", while_starting=prepare_the_brand) as server:
            yield from deploy_and_work(server, project, sandbox, brand_database_url)


def deploy_and_work(
    server: PrefectServer, project: Path, sandbox: RunningSandbox, database_url: str
) -> Iterator[Deployed]:
    """The README's Prefect commands, in its order, then a worker."""
    env = server.env(
        SIYU_DATABASE_URL=database_url,
        SIYU_CHANNEL_BASE_URL=sandbox.url,
        PWD=str(project),  # what `{{ $PWD }}` in prefect.yaml resolves to, as in a shell
    )
    server.prefect(project, "work-pool", "create", "siyu", "--type", "process", env=env)
    server.prefect(project, "deploy", "--all", env=env)
    with running_worker(server, "siyu", project, env) as worker_log:
        yield Deployed(server, project, sandbox, database_url, env, worker_log)


@pytest.fixture(scope="session")
def scheduled_run(deployed: Deployed) -> dict[str, Any]:
    """The first run the scheduler created that the worker completed. A fixture, so that every
    test needing it waits for it whatever order the tests run in."""

    def completed_scheduled_run() -> dict[str, Any] | None:
        runs = deployed.flow_runs(state={"type": {"any_": ["COMPLETED"]}})
        return next((run for run in runs if run["auto_scheduled"]), None)

    run = wait_until(
        completed_scheduled_run, 420, "a scheduled run to complete", deployed.worker_log
    )
    pause(deployed)  # one scheduled run is the proof: later ones would only cost CPU
    return run


def test_the_scheduler_creates_a_tick_that_the_worker_runs_and_the_sandbox_receives(
    deployed: Deployed, scheduled_run: dict[str, Any]
) -> None:
    run = scheduled_run
    assert run["created_by"]["type"] == "SCHEDULE"
    assert run["name"].startswith(f"{JOURNEY} @ ")

    tasks = deployed.server.api(
        "POST", "/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}
    )
    names = {task["name"] for task in tasks}
    assert PHASES | STEPS <= names, names
    assert all(task["state_type"] == "COMPLETED" for task in tasks)

    artifacts = deployed.server.api(
        "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    by_key = {artifact["key"]: artifact for artifact in artifacts}
    assert f"{JOURNEY}-tick" in by_key and by_key[f"{JOURNEY}-tick"]["type"] == "table"
    graph = by_key[f"{JOURNEY}-graph"]
    assert "](data:image/svg+xml;base64," in graph["data"] and "```mermaid" not in graph["data"]

    # siyu's own logger (here: the breaker's warning about alerts.yaml) reaches the run's logs
    logs = deployed.server.api(
        "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    assert any(
        log["name"] == "siyu.alerts.breaker" and "alerts.yaml is invalid" in log["message"]
        for log in logs
    ), [log["name"] for log in logs]

    # The first tick of a journey enrolls and sends: the sandbox received every message the
    # ledger records as sent, each exactly once.
    messages = SandboxClient(deployed.sandbox.url).messages()
    assert messages, "the scheduled tick sent nothing"
    keys = [(m["channel"], m["key"]) for m in messages]
    assert len(keys) == len(set(keys)), "a message arrived twice"
    assert {m["channel"] for m in messages} >= {"wecom"}

    def settled() -> bool:  # later scheduled ticks may still be running: compare when quiet
        running = deployed.flow_runs(state={"type": {"any_": ["RUNNING", "PENDING"]}})
        return not running and deployed.sent_in_ledger() == len(
            SandboxClient(deployed.sandbox.url).messages()
        )

    pause(deployed)
    wait_until(settled, 180, "the ledger and the sandbox to agree", deployed.worker_log)
    by_channel: dict[str, int] = {}
    for message in SandboxClient(deployed.sandbox.url).messages():
        by_channel[message["channel"]] = by_channel.get(message["channel"], 0) + 1
    print(  # shown with `pytest -s`: what the closing notes quote
        f"\nscheduled run {run['name']!r} ({run['created_by']['type']}): "
        f"task runs {sorted(names)}; sandbox received {by_channel}"
    )


def pause(deployed: Deployed) -> None:
    """Stop the schedule (the operator's command) and drop the runs it had already planned."""
    deployed.server.prefect(
        deployed.project, "deployment", "schedule", "pause", "--all", env=deployed.env
    )
    for run in deployed.flow_runs(state={"type": {"any_": ["SCHEDULED"]}}):
        deployed.server.api("DELETE", f"/flow_runs/{run['id']}")


def test_the_ui_draws_the_journeys_picture_not_its_source(
    deployed: Deployed, scheduled_run: dict[str, Any], tmp_path: Path
) -> None:
    from PIL import Image

    artifacts = deployed.server.api(
        "POST",
        "/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [scheduled_run["id"]]}}},
    )
    (graph,) = [artifact for artifact in artifacts if artifact["key"] == f"{JOURNEY}-graph"]
    page = f"{deployed.server.ui}/artifacts/artifact/{graph['id']}"
    profile = tmp_path / "profile"
    wait = "--virtual-time-budget=20000"  # the UI is a single-page app: let it fetch and draw
    dom = run_chromium(profile, wait, "--dump-dom", page)
    assert "data:image/svg+xml;base64," in dom and "<img" in dom
    assert "flowchart TD" not in dom and "&lt;b&gt;" not in dom  # no Mermaid source shown
    screenshot = tmp_path / "artifact.png"
    run_chromium(profile, wait, "--window-size=1280,1600", f"--screenshot={screenshot}", page)
    pixels = Image.open(screenshot).convert("RGB").getcolors(maxcolors=1 << 20) or []
    colours = {colour: count for count, colour in pixels}
    # The boxes are filled with the picture's own colours (siyu/graph/draw.py COLOURS):
    # entry (light blue), exit (light red) and goal (light green) are drawn, each a block of
    # thousands of pixels, which source text shown as code could never produce.
    for name, rgb in (
        ("entry", (0xDB, 0xEA, 0xFE)),
        ("exit", (0xFE, 0xE2, 0xE2)),
        ("goal", (0xDC, 0xFC, 0xE7)),
    ):
        assert colours.get(rgb, 0) > 2000, f"the {name} box is not drawn ({colours.get(rgb, 0)} px)"


def test_a_journey_broken_after_deploy_fails_its_run_with_the_problem_and_sends_nothing(
    deployed: Deployed, scheduled_run: dict[str, Any]
) -> None:
    # after the scheduler's run (the fixture waits for it): this test pauses the schedule
    pause(deployed)
    wait_until(
        lambda: not deployed.flow_runs(state={"type": {"any_": ["RUNNING", "PENDING"]}}),
        180,
        "running ticks to finish",
    )
    before = len(SandboxClient(deployed.sandbox.url).messages())
    journey = deployed.project / "journeys" / "first_purchase.yaml"
    good = journey.read_text(encoding="utf-8")
    journey.write_text(good.replace("send: service_account", "send: service_acount"), "utf-8")
    try:
        out = deployed.server.prefect(
            deployed.project, "deployment", "run", f"journey-tick/{JOURNEY}", env=deployed.env
        )
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert run_id, out

        def final() -> dict[str, Any] | None:
            run = deployed.server.api("GET", f"/flow_runs/{run_id.group(1)}")
            return run if run["state_type"] in ("FAILED", "COMPLETED", "CRASHED") else None

        run = wait_until(final, 300, "the run of the broken journey to end", deployed.worker_log)
    finally:
        journey.write_text(good, encoding="utf-8")
    assert run["state_type"] == "FAILED"
    line = next(i for i, row in enumerate(good.splitlines(), 1) if "send: service_account" in row)
    # The run's state, shown on its page in the UI, names the problem's position itself.
    message = run["state"]["message"] or ""
    assert re.search(rf"journeys/first_purchase\.yaml:{line}:\d+", message), message

    def run_logs_naming_the_line() -> str | None:
        # The flow run's own logs reach the server through a background log worker, and
        # may land after its FAILED state does: poll for them rather than read once.
        logs = deployed.server.api(
            "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}
        )
        text = "\n".join(log["message"] for log in logs)
        return text if re.search(rf"journeys/first_purchase\.yaml:{line}:\d+", text) else None

    text = wait_until(
        run_logs_naming_the_line,
        60,
        f"the failed run's logs to name line {line}",
        deployed.worker_log,
    )
    assert "service_acount" in text and "did you mean" in text
    assert len(SandboxClient(deployed.sandbox.url).messages()) == before


def test_the_sync_completing_starts_the_cleaning_through_a_deployment_trigger(
    deployed: Deployed,
) -> None:
    """The data timetable chains its stages with Prefect's deployment triggers: no stage
    polls for the previous one while holding a worker."""
    (deployed.project / "inbox").mkdir(exist_ok=True)  # an empty inbox: nothing to import
    deployed.server.prefect(
        deployed.project, "deployment", "run", "data-sync/data-sync", env=deployed.env
    )

    def runs_of(flow: str, states: tuple[str, ...]) -> list[dict[str, Any]]:
        body = {
            "deployments": {"name": {"any_": [flow]}},
            "flow_runs": {"state": {"type": {"any_": list(states)}}},
            "limit": 20,
        }
        return list(deployed.server.api("POST", "/flow_runs/filter", json=body))

    final = ("COMPLETED", "FAILED", "CRASHED")
    (sync,) = wait_until(lambda: runs_of("data-sync", final), 300, "the sync", deployed.worker_log)
    assert sync["state_type"] == "COMPLETED", sync["state"]
    cleaning = wait_until(
        lambda: [r for r in runs_of("data-clean", final) if not r["auto_scheduled"]],
        300,
        "the trigger to start the cleaning and the worker to run it",
        deployed.worker_log,
    )
    assert cleaning[0]["created_by"]["type"] != "SCHEDULE"
    assert cleaning[0]["start_time"] >= sync["end_time"]


def _process_of_flow_run(flow_run_id: str) -> int | None:
    """The pid of the process running the flow run's code (Prefect's engine, started by the
    worker with PREFECT__FLOW_RUN_ID in its environment), if it is running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environment and (
            b"prefect/engine.py" in command or b"prefect.engine" in command
        ):
            return int(entry.name)
    return None


def test_a_deployed_run_whose_process_dies_is_crashed_and_frees_its_concurrency_slot(
    deployed: Deployed, scheduled_run: dict[str, Any]
) -> None:
    """The deployment allows one run at a time (prefect.yaml: concurrency_limit 1, CANCEL_NEW).
    A run whose process is SIGKILLed while it runs must not stay RUNNING: the worker sees its
    process die and marks it Crashed, so the next run is not cancelled as a collision."""
    import os
    import signal
    import time

    pause(deployed)
    wait_until(
        lambda: not deployed.flow_runs(state={"type": {"any_": ["RUNNING", "PENDING"]}}),
        180,
        "running ticks to finish",
    )

    def start_run() -> str:
        out = deployed.server.prefect(
            deployed.project, "deployment", "run", f"journey-tick/{JOURNEY}", env=deployed.env
        )
        found = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert found, out
        return found.group(1)

    def state_of(run_id: str) -> str:
        return str(deployed.server.api("GET", f"/flow_runs/{run_id}")["state_type"])

    def kill_while_running(run_id: str) -> bool:
        """SIGKILL the run's process once it is RUNNING; False if the run ended first (a tick
        with nothing due takes a few seconds)."""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            pid = _process_of_flow_run(run_id)
            state = state_of(run_id)
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return False
            if pid is not None and state == "RUNNING":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended between the look and the kill
                    return False
                return True
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} never ran: {state_of(run_id)}")

    victim = start_run()
    for _ in range(3):
        if kill_while_running(victim):
            break
        victim = start_run()
    else:
        raise AssertionError("three runs ended before they could be killed")

    def ended(run_id: str) -> dict[str, Any] | None:
        run = deployed.server.api("GET", f"/flow_runs/{run_id}")
        final = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
        return run if run["state_type"] in final else None

    dead = wait_until(lambda: ended(victim), 120, "the killed run to end", deployed.worker_log)
    assert dead["state_type"] == "CRASHED", dead["state"]

    next_run = start_run()
    finished = wait_until(lambda: ended(next_run), 240, "the next run to end", deployed.worker_log)
    assert finished["state_type"] == "COMPLETED", finished["state"]  # not CANCELLED: slot free
