"""A throwaway siyu project on disk (journeys/, templates/, lint.yaml) for the tools' tests."""

from __future__ import annotations

from pathlib import Path

from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[2]

JOURNEY = """\
journey: {name}
entry:
  event: order_paid
  where: "order_seq = 1"
steps:
{steps}
"""


def step(step_id: str, template: str, send: str = "wecom", extra: str = "") -> str:
    return f"  - id: {step_id}\n    at: 1d\n    send: {send}\n    template: {template}\n{extra}"


def make_project(tmp: Path, templates: dict[str, str], steps: list[str], name: str = "t") -> Path:
    (tmp / "journeys").mkdir(parents=True, exist_ok=True)
    (tmp / "templates").mkdir(exist_ok=True)
    for file, text in templates.items():
        (tmp / "templates" / file).write_text(text, encoding="utf-8")
    (tmp / "journeys" / f"{name}.yaml").write_text(
        JOURNEY.format(name=name, steps="".join(steps)), encoding="utf-8"
    )
    return tmp


def copy_repo_project(tmp: Path) -> Path:
    """The repository's own journeys and templates, in a folder a test may change."""
    return copy_project(tmp, ("journeys", "templates"))
