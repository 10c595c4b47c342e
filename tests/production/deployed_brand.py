"""The brand the production tests deploy: a copy of the repository shaped to be quick and
independent of the clock, deployed by the README's commands to a real Prefect server, a worker
running it (the fixtures are in tests/production/conftest.py).

The copy differs from the repository only where a test must be quick: one journey, an interval
schedule of 15 s, no quiet hours (CI may run at night in Shanghai), a 60-day entry lookback so
the first tick has entrants, and a broken alerts.yaml whose warning (from siyu's own logger)
must reach the run's logs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from sqlalchemy import create_engine, func, select

from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import Delivery
from tests.production.prefect_server import BIN, PrefectServer, running_worker

JOURNEY = "first-purchase-care"


@dataclass
class Deployed:
    server: PrefectServer
    project: Path
    sandbox: RunningSandbox
    database_url: str
    env: dict[str, str]
    worker_log: Path
    paused: bool = False  # the operator's `schedule pause` ran (nothing here resumes it)

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


def pause(deployed: Deployed) -> None:
    """Stop the schedule (the operator's command) and drop the runs it had already planned.
    The command runs once a session: the schedules stay paused (no test resumes one), and
    each `prefect` command costs ~2 s of CPU and ~3 s on the production tests' one worker."""
    if not deployed.paused:
        deployed.server.prefect(
            deployed.project, "deployment", "schedule", "pause", "--all", env=deployed.env
        )
        deployed.paused = True
    for run in deployed.flow_runs(state={"type": {"any_": ["SCHEDULED"]}}):
        deployed.server.api("DELETE", f"/flow_runs/{run['id']}")


def process_of_flow_run(flow_run_id: str) -> int | None:
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
