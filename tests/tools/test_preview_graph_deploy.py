"""preview renders through the engine's renderer with PII masked; graph draws every part of
a journey; deploy writes prefect.yaml that Prefect's own model accepts and keeps hand edits."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ruamel.yaml import YAML
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from siyu.cli.deploy_cmd import check_with_prefect
from siyu.cli.main import app
from siyu.deploy.prefect_yaml import ENTRYPOINT, update_prefect_yaml
from siyu.graph.draw import to_mermaid, to_svg
from siyu.graph.model import build_graph
from siyu.preview.masking import mask_name, mask_text
from tests.conftest import Shop, local
from tests.tools.project_files import ROOT
from tests.tools.test_simulate import journey


def test_masking() -> None:
    assert mask_name("王小明") == "王*明" and mask_name("欧阳小明") == "欧**明"
    assert (
        mask_text("call 13812341234 or 王小明", {"name": "王小明"}) == "call 138****1234 or 王*明"
    )


def test_preview_of_a_real_customer_is_masked(sessions: sessionmaker[Session], shop: Shop) -> None:
    buyer = shop.customer("王小明")
    shop.order(buyer, local(0, 10), seq=1, category="母婴")
    result = CliRunner().invoke(
        app,
        ["preview", "first-purchase-care", "day14-repurchase", "--customer", str(buyer)],
        env={"SIYU_DATABASE_URL": str(sessions.kw["bind"].url), "SIYU_PROJECT_DIR": str(ROOT)},
    )
    assert result.exit_code == 0, result.output
    assert "王*明您好" in result.output and "母婴相关商品" in result.output
    assert "王小明" not in result.output


def test_preview_names_an_unknown_step(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["preview", "first-purchase-care", "day3-cair"],
        env={"SIYU_DATABASE_URL": f"sqlite:///{tmp_path}/none.db", "SIYU_PROJECT_DIR": str(ROOT)},
    )
    assert result.exit_code == 1
    assert "did you mean 'day3-care'" in result.output


def test_preview_without_database_uses_sample_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["preview", "first-purchase-care", "join-group", "--customer", "1"],
        env={"SIYU_DATABASE_URL": f"sqlite:///{tmp_path}/none.db", "SIYU_PROJECT_DIR": str(ROOT)},
    )
    assert result.exit_code == 0, result.output
    assert "sample data" in result.output and "小程序商城的首单" in result.output


def test_graph_shows_steps_waits_deadlines_exit_and_goal() -> None:
    graph = build_graph(journey())
    mermaid = to_mermaid(graph)
    assert "step_day3_care -->|wait 6d| step_day7_content" in mermaid
    assert "+1d · until +3d" in mermaid and "entry -.->|within 30d| goal" in mermaid
    svg = ET.fromstring(to_svg(graph))
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    for expected in ("day14-repurchase", "sms · day14_coupon.j2", "exit", "goal", "wait 7d"):
        assert expected in texts


def test_deploy_adds_updates_removes_and_keeps_hand_edits() -> None:
    spec = journey()
    current = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    current = current.replace(
        "    work_pool: *siyu_pool", "    tags: [crm]\n    work_pool: *siyu_pool"
    )
    current = current.replace('cron: "*/15 * * * *"', 'cron: "0 * * * *"')
    stale = "  - name: gone\n    entrypoint: " + ENTRYPOINT + "\n    parameters: {journey: gone}\n"
    text, changes = update_prefect_yaml(current + stale, {spec.journey: (spec, "journeys/x.yaml")})
    assert changes.updated == ["first-purchase-care"] and "gone" in changes.removed
    data = YAML(typ="safe").load(text)
    # hand-written deployments of other flows (the data timetable) are kept as they are
    (deployment,) = [d for d in data["deployments"] if d["entrypoint"] == ENTRYPOINT]
    assert deployment["schedules"] == [{"cron": "*/15 * * * *", "timezone": "Asia/Shanghai"}]
    assert deployment["tags"] == ["crm"] and deployment["work_pool"]["name"] == "siyu"
    assert deployment["parameters"] == {"journey": "first-purchase-care"}
    assert check_with_prefect(text) == []
    again, changes = update_prefect_yaml(text, {spec.journey: (spec, "journeys/x.yaml")})
    assert again == text and changes.unchanged == ["first-purchase-care"]


def test_deploy_from_nothing_and_the_committed_file_is_current() -> None:
    spec = journey()
    text, changes = update_prefect_yaml(
        None, {spec.journey: (spec, "journeys/first_purchase.yaml")}
    )
    assert changes.added == ["first-purchase-care"] and check_with_prefect(text) == []
    from siyu.project import Project

    committed = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    regenerated, _ = update_prefect_yaml(committed, Project.find(ROOT).journeys_by_name())
    assert regenerated == committed, "prefect.yaml is stale: run `siyu deploy`"


def test_graph_lint_and_sample_preview_handle_the_complete_language(tmp_path: Path) -> None:
    """Calendar entries (no entry event), anchored and yearly timing, conditions, variants."""
    from siyu.language.lint import lint_journey
    from siyu.language.lint_config import LintConfig
    from siyu.preview.render_preview import preview_sample
    from tests.journey_files import write_journey
    from tests.recording_channel import recording_channels

    spec = write_journey(
        tmp_path,
        recording_channels(),
        (
            "journey: member-day\nholdout: 5%\n"
            "entry: {calendar: '0 10 1 * *', audience: \"member_level = '金卡'\"}\n"
            "steps:\n"
            "  - id: greet\n    at: {from: customer.birthday, annual: true, offset: 10h}\n"
            "    send: sms\n    template: hello.j2\n"
            "    if: {all: [{not: {reachable: wecom}}, {event: browse, since: 7d}]}\n"
            "    variants: [{id: a, template: a.j2}, {id: b, weight: 2, template: b.j2}]\n"
            "  - {id: follow, at: 1d, send: wecom, template: hello.j2,"
            " if: {step: greet, status: skipped}}\n"
        ),
    )
    graph = build_graph(spec)
    text = to_mermaid(graph)
    assert "calendar 0 10 1 * *" in text and "yearly customer.birthday 10h" in text
    assert "not reachable on wecom" in text and "variants a×1, b×2" in text
    ET.fromstring(to_svg(graph))  # well-formed SVG
    problems = list(
        lint_journey("j.yaml", spec, tmp_path / "templates", lambda *_: (1, 1), LintConfig())
    )
    assert all(p.code != "unknown-field" for p in problems)
    rendered = preview_sample(spec, spec.steps[1], tmp_path / "templates")
    assert "您好" in rendered.body


def test_prefects_own_prefect_yaml_model_still_refuses_what_prefect_deploy_refuses() -> None:
    """check_with_prefect relies on a private Prefect module (prefect.cli.deploy._models);
    this pins the behaviour it relies on, so a Prefect upgrade that moves or loosens it fails
    here (tests/production/ proves `prefect deploy` accepts what siyu deploy writes)."""
    spec = journey()
    text, _ = update_prefect_yaml(None, {spec.journey: (spec, "journeys/first_purchase.yaml")})
    assert check_with_prefect(text) == []
    assert "concurrency_limit" in text and "CANCEL_NEW" in text
    broken = text.replace("collision_strategy: CANCEL_NEW", "collision_strategy: [not, a, str]")
    assert check_with_prefect(broken)
    assert check_with_prefect(text.replace("deployments:", "deployments: 3\nx:"))


def test_deploy_gives_the_work_pools_runs_heartbeats_keeping_its_other_variables() -> None:
    """`siyu watchdog` listens for deployed runs' heartbeats: a prefect.yaml written before it
    gains PREFECT_FLOWS_HEARTBEAT_FREQUENCY in its work pool, once; an operator's own value and
    the pool's other job variables stay."""
    spec = journey()
    journeys = {spec.journey: (spec, "journeys/first_purchase.yaml")}
    committed = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    older = re.sub(
        r"(?m)^        env:\n(          #.*\n)?          PREFECT_FLOWS.*\n", "", committed
    )
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" not in older

    text, changes = update_prefect_yaml(older, journeys)
    pool = YAML(typ="safe").load(text)["definitions"]["work_pools"]["siyu"]
    assert pool["job_variables"] == {
        "working_dir": "{{ $PWD }}",
        "env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
    }
    assert changes.notes == [
        "work pool: added PREFECT_FLOWS_HEARTBEAT_FREQUENCY (for `siyu watchdog`)"
    ]
    assert "\n\ndeployments:" in text  # the blank line before the deployments stays there
    assert check_with_prefect(text) == []

    own = text.replace(
        'PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "30"', 'PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "60"'
    )
    again, changes = update_prefect_yaml(own, journeys)
    assert again == own and changes.notes == []


def test_watchdog_refuses_a_silence_shorter_than_a_heartbeat_and_a_missing_server() -> None:
    import subprocess
    import sys

    from tests.production.prefect_server import clean_environment

    short = CliRunner().invoke(app, ["watchdog", "--silence", "30"])
    assert short.exit_code == 1
    assert "--silence 30: at least 40 s" in short.output
    # in a process of its own: this one's Prefect settings may point at the tests' server
    siyu = Path(sys.executable).parent / "siyu"
    missing = subprocess.run(
        [str(siyu), "watchdog"], env=clean_environment(), capture_output=True, text=True, cwd=ROOT
    )
    assert missing.returncode == 1
    assert "set PREFECT_API_URL" in missing.stderr
