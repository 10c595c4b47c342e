"""`siyu demo` keeps its Prefect runs in a home of its own under var/ (never the user's
~/.prefect, which may hold a server's deployments and automations), and its pointer to the
Prefect UI names that home; a home or a server the user chose is kept."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from siyu.cli.demo_output import DEMO_PREFECT_HOME, pointers, use_demo_prefect_home
from siyu.demo import DemoResult, DemoSettings


def _pointer_to_prefect() -> list[str]:
    result = DemoResult(
        data=None,  # type: ignore[arg-type]
        summary=None,  # type: ignore[arg-type]
        ticks=1,
        seconds_per_tick=1.0,
        sandbox_stats={},
        sandbox_url="http://127.0.0.1:8765",
        state_file=Path("var/sandbox-state.json"),
        database_url="sqlite:///var/demo.db",
        example_customer=None,
        ended=datetime(2026, 10, 22, tzinfo=UTC),
    )
    found = [p for p in pointers(DemoSettings(), result) if "flow runs" in p.label]
    return found[0].command


def _without_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.environ replaced for the test (restored after it): nothing leaks to other tests."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    monkeypatch.setattr(os, "environ", clean)


def test_the_demo_uses_a_home_of_its_own_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_prefect(monkeypatch)
    use_demo_prefect_home()
    assert os.environ["PREFECT_HOME"] == DEMO_PREFECT_HOME == "var/prefect-home"
    command = _pointer_to_prefect()
    assert command[0] == "PREFECT_HOME=var/prefect-home" and command[-2:] == ["server", "start"]


@pytest.mark.parametrize("chosen", [{"PREFECT_HOME": "/srv/prefect"}, {"PREFECT_API_URL": "x"}])
def test_a_home_or_server_the_user_chose_is_kept(
    monkeypatch: pytest.MonkeyPatch, chosen: dict[str, str]
) -> None:
    _without_prefect(monkeypatch)
    os.environ.update(chosen)
    use_demo_prefect_home()
    assert os.environ.get("PREFECT_HOME") == chosen.get("PREFECT_HOME")
    assert not _pointer_to_prefect()[0].startswith("PREFECT_HOME=")
