"""All journeys at one moment, the highest `priority` first: when journeys compete for a
customer's capped contacts (policies.yaml), the more important one is ticked first and wins.
Deploy this instead of one deployment per journey when journeys share caps."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.journey_flow import journey_tick, parse_now
from siyu.engine.marketer_sql import MarketerSqlError
from siyu.language.problems import SpecError
from siyu.project import Project


@flow(name="all-journeys-tick", log_prints=True)
def all_journeys_tick(
    now: str | None = None, channel_base_url: str | None = None
) -> dict[str, dict[str, dict[str, int]]]:
    """Tick every journey in journeys/ at the same `now`, by descending priority. A journey
    with problems (a broken file or template, a name two files use) does not run, and never
    stops the others: they are ticked, then the run fails with every problem found; so does a
    journey whose own SQL times out or is refused at run time."""
    moment = parse_now(now).isoformat()
    specs, problems = Project.find().check_all()
    broken = {p.file for p in problems}
    ordered = sorted(specs.values(), key=lambda spec: (-spec.priority, spec.journey))
    results: dict[str, dict[str, dict[str, int]]] = {}
    refused: list[str] = []
    for spec in ordered:
        try:
            results[spec.journey] = journey_tick(
                journey=spec.journey, now=moment, channel_base_url=channel_base_url
            )
        except SpecError as error:  # its own file's problems, already in `problems` or new
            problems += [p for p in error.problems if p.file not in broken]
        except MarketerSqlError as error:  # one journey's slow or refused SQL fails only it
            refused.append(str(error))
    for message in refused if problems else ():
        get_run_logger().error(message)  # the run fails with the problems; say these too
    if problems:
        raise SpecError(problems)
    if refused:
        raise MarketerSqlError("\n".join(refused))
    return results
