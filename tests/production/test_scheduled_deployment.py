"""The production path, the way a brand runs it: a real `prefect server` with its scheduler, a
process work pool and worker, deployments made by `siyu deploy` and `prefect deploy --all`
from a copy of the repository, and a tick **created by the scheduler** that the worker runs to
Completed, its messages arriving at the channel sandbox over HTTP. Then the run as the UI
shows it (headless Chromium), and a journey broken after deploy failing its run with the
problems as file:line:col, sending nothing.

One server for the session (it costs 20-50 s to start): tests/production/conftest.py, with
the brand's copy of the project described in tests/production/deployed_brand.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from siyu.sandbox.client import SandboxClient
from tests.browser import run_chromium
from tests.production.deployed_brand import JOURNEY, Deployed, pause
from tests.production.prefect_server import wait_until

# One xdist worker runs every production module against its one server (--dist loadgroup).
# Tests that need the scheduler's first run wait for it through the `scheduled_run` fixture,
# in any order.
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("prefect-server")]

STEPS = {"join-group", "day3-care", "day7-content", "day14-repurchase"}
PHASES = {"enroll", "goals", "exits", "complete"}


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
