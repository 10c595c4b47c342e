"""`siyu deploy`: prefect.yaml from the journeys, after they pass `siyu validate`."""

from __future__ import annotations

import typer
from rich.console import Console

from siyu.cli.conventions import cli_command

console = Console(soft_wrap=True)


def check_with_prefect(text: str) -> list[str]:
    """Errors Prefect's own prefect.yaml model finds (empty: `prefect deploy` can read it)."""
    from prefect.cli.deploy._models import PrefectYamlModel  # Prefect is slow to import
    from pydantic import ValidationError
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(text)
    try:
        PrefectYamlModel.model_validate(data)
    except ValidationError as error:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
    return []


@cli_command()
def deploy_command() -> None:
    """Write or update prefect.yaml: one deployment per journey (schedule, time zone).

    Refuses while `siyu validate` finds a problem. Then `prefect deploy --all` creates the
    deployments and a process worker (`prefect worker start --pool siyu`) runs them.
    """
    from siyu.deploy.prefect_yaml import write_prefect_yaml
    from siyu.language.check_project import check_project
    from siyu.language.problems import format_problems
    from siyu.project import Project

    project = Project.find()
    specs, problems = check_project(project)
    if problems:
        console.print(format_problems(problems), markup=False, highlight=False)
        console.print("[red]not deploying: fix these first (siyu validate)[/red]")
        raise typer.Exit(1)
    files = project.journeys_by_name()
    changes = write_prefect_yaml(
        project.root, {name: (specs[name], files[name][1]) for name in specs}, check_with_prefect
    )
    for label, names in (
        ("added", changes.added),
        ("updated", changes.updated),
        ("removed", changes.removed),
        ("unchanged", changes.unchanged),
    ):
        if names:
            console.print(f"{label}: {', '.join(names)}")
    for note in changes.notes:
        console.print(note)
    console.print(
        f"wrote {project.root / 'prefect.yaml'}; next: prefect deploy --all, then siyu watchdog"
    )
