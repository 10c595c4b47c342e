"""The production tests' one Prefect server, worker and deployed brand (session-scoped: xdist
may run another module's test between two of theirs, which would tear a module-scoped server
down and start another; every module using them is in the `prefect-server` xdist group)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import start_sandbox
from tests.production.deployed_brand import (
    JOURNEY,
    Deployed,
    deploy_and_work,
    every_seconds,
    pause,
    shape_for_test,
    siyu,
)
from tests.production.prefect_server import clean_environment, running_server, wait_until
from tests.project_copy import copy_project

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


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


@pytest.fixture(scope="session")
def scheduled_run(deployed: Deployed) -> dict[str, Any]:
    """The first run the scheduler created that the worker ran, once Completed. A fixture, so
    that every test needing it waits for it whatever order the tests run in. The schedule is
    paused as soon as the worker started that run: one scheduled run is the proof, and the
    next one (a tick every 15 s) would cost a flow run's process, ~5 s of CPU, and the tests
    that wait for quiet ~20 s."""

    def started_scheduled_run() -> dict[str, Any] | None:
        runs = deployed.flow_runs(state={"type": {"any_": ["RUNNING", "COMPLETED"]}})
        return next((run for run in runs if run["auto_scheduled"]), None)

    first = wait_until(
        started_scheduled_run, 420, "the worker to run a scheduled run", deployed.worker_log
    )
    pause(deployed)

    def ended() -> dict[str, Any] | None:
        run = dict(deployed.server.api("GET", f"/flow_runs/{first['id']}"))
        return run if run["state_type"] in FINAL else None

    run = wait_until(ended, 300, "the scheduled run to end", deployed.worker_log)
    assert run["state_type"] == "COMPLETED", run["state"]
    return run
