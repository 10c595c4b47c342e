"""`siyu watchdog`: a deployed run whose machine died is marked Crashed, not left Running.

A process worker marks a run Crashed when the run's process dies under it. When the worker
dies too (the machine, the container), nobody does: the run stays Running in the UI for ever,
and its journey's concurrency slot (prefect.yaml: limit 1) stays held until Prefect's lease on
it expires. Deployed runs send heartbeats (`siyu deploy` sets PREFECT_FLOWS_HEARTBEAT_FREQUENCY
in the work pool); this command creates, or updates, the Prefect automation that marks a run
Crashed once its heartbeats stop: Prefect's own recipe ("Detect zombie flows").
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from siyu.cli.conventions import cli_command, fail
from siyu.deploy.prefect_yaml import HEARTBEAT_SECONDS

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

AUTOMATION_NAME = "siyu: crash runs whose heartbeats stopped"
# Two missed heartbeats, as Prefect's recipe allows: one late heartbeat is not a dead machine.
DEFAULT_SILENCE = 3 * HEARTBEAT_SECONDS
# A heartbeat arrives every HEARTBEAT_SECONDS; a shorter silence would crash live runs.
MINIMUM_SILENCE = HEARTBEAT_SECONDS + 10
FINAL_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")

console = Console(soft_wrap=True)


def zombie_automation(silence_seconds: int) -> AutomationCore:
    """The automation: a flow run that sent a heartbeat and then, for `silence_seconds`,
    neither another heartbeat nor a final state, is set Crashed (through orchestration, so
    its deployment's concurrency slot is released)."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(
            "Created by `siyu watchdog`: a deployed run whose process and worker died (its "
            "machine) stops sending heartbeats; it is marked Crashed."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                *(f"prefect.flow-run.{state}" for state in FINAL_EVENTS),
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silence_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"no heartbeat for {silence_seconds} s: the run's process and its worker "
                    "stopped (siyu watchdog). Its unfinished messages are resent, once, by "
                    "a later tick after their lease."
                ),
            )
        ],
    )


def install_zombie_automation(silence_seconds: int) -> str:
    """Create the automation, or update the one with its name; 'created' or 'updated'."""
    from prefect.client.orchestration import get_client

    wanted = zombie_automation(silence_seconds)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
        if not existing:
            client.create_automation(wanted)
            return "created"
        client.update_automation(existing[0].id, wanted)
        return "updated"


@cli_command()
def watchdog_command(
    silence: Annotated[
        int,
        typer.Option(
            "--silence",
            help=f"seconds without a heartbeat before a run is marked Crashed (at least "
            f"{MINIMUM_SILENCE}: heartbeats come every {HEARTBEAT_SECONDS} s)",
        ),
    ] = DEFAULT_SILENCE,
) -> None:
    """Mark deployed runs whose machine died Crashed: creates or updates a Prefect automation
    on the server at PREFECT_API_URL. Run it once after `prefect deploy --all`."""
    from prefect.settings import get_current_settings

    if silence < MINIMUM_SILENCE:
        fail(
            f"--silence {silence}: at least {MINIMUM_SILENCE} s; runs send a heartbeat every "
            f"{HEARTBEAT_SECONDS} s, so a shorter silence would crash live runs"
        )
    if not get_current_settings().api.url:
        fail(
            "siyu watchdog needs the Prefect server the deployments run on: set "
            "PREFECT_API_URL, e.g. http://127.0.0.1:4200/api"
        )
    done = install_zombie_automation(silence)
    console.print(
        f"{done} automation '{AUTOMATION_NAME}': a deployed run silent for {silence} s is "
        "marked Crashed"
    )
