"""`siyu validate`'s content rules: fields a template uses that the journey's data lacks,
notification steps that read like marketing, SMS signature and opt-out, Advertising Law
terms (configurable), unreachable steps, and the exit status of the command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.graph.model import Edge, JourneyGraph, Node, unreachable
from siyu.language.check_project import check_project
from siyu.language.lint import find_words
from siyu.language.problems import Problem
from siyu.project import Project
from tests.tools.project_files import ROOT, make_project, step


def problems_of(tmp: Path, templates: dict[str, str], steps: list[str]) -> list[Problem]:
    _specs, problems = check_project(Project(make_project(tmp, templates, steps)))
    return problems


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


def test_the_repository_validates_clean() -> None:
    specs, problems = check_project(Project(ROOT))
    assert problems == []
    assert "first-purchase-care" in specs


def test_event_field_the_entry_source_lacks_is_named_with_line_and_fix(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        {"a.j2": "{{ customer.name }}您好\n您买的{{ event.catgory }}到了"},
        [step("hello", "a.j2")],
    )
    (problem,) = problems
    assert problem.code == "unknown-field"
    assert (problem.line, problem.column) == (2, 7)
    assert "did you mean 'category'" in problem.message
    assert "order_paid" in problem.message


def test_customer_field_that_does_not_exist(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, {"a.j2": "{{ customer['mobile'] }}"}, [step("s", "a.j2")])
    assert codes(problems) == ["unknown-field"]


def test_notification_that_reads_like_marketing_needs_consent(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        {"n.j2": "您的订单已发货\n送您一张优惠券"},
        [step("ship", "n.j2", extra="    purpose: notification\n")],
    )
    (problem,) = problems
    assert problem.code == "consent-missing"
    assert problem.file.endswith("t.yaml") and problem.line == 10  # the `purpose:` line
    assert "purpose: marketing" in problem.message
    # the same words in a marketing step are fine: it checks consent
    assert problems_of(tmp_path, {"n.j2": "送您一张优惠券"}, [step("s", "n.j2")]) == []


def test_sms_needs_signature_and_opt_out(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, {"s.j2": "您的券已到账"}, [step("s", "s.j2", send="sms")])
    by_code = {p.code: p.message for p in problems}
    assert sorted(by_code) == ["sms-opt-out", "sms-signature"]
    assert "【悦享生活】" in by_code["sms-signature"] and "回T退订" in by_code["sms-opt-out"]
    good = "【悦享生活】您的券已到账，回T退订"
    assert problems_of(tmp_path, {"s.j2": good}, [step("s", "s.j2", send="sms")]) == []
    notice = [step("s", "s.j2", send="sms", extra="    purpose: notification\n")]
    assert codes(problems_of(tmp_path, {"s.j2": "【悦享生活】已发货"}, notice)) == []


def test_advertising_law_terms_with_positions_and_allowed_compounds(tmp_path: Path) -> None:
    text = "最近好吗\n全网最低价，行业第一，国家级品质"
    problems = problems_of(tmp_path, {"a.j2": text}, [step("s", "a.j2")])
    assert [(p.code, p.line, p.column) for p in problems] == [
        ("banned-word", 2, 3),
        ("banned-word", 2, 9),
        ("banned-word", 2, 12),
    ]
    notice = [step("s", "a.j2", extra="    purpose: notification\n")]
    assert problems_of(tmp_path, {"a.j2": text}, notice) == []  # not advertising


def test_banned_words_are_configurable_in_lint_yaml(tmp_path: Path) -> None:
    make_project(tmp_path, {"a.j2": "爆款好物"}, [step("s", "a.j2")])
    assert check_project(Project(tmp_path))[1] == []
    (tmp_path / "lint.yaml").write_text("banned_words: [爆款]\n", encoding="utf-8")
    assert codes(check_project(Project(tmp_path))[1]) == ["banned-word"]


def test_unknown_lint_key_suggests_the_right_one(tmp_path: Path) -> None:
    make_project(tmp_path, {"a.j2": "hi"}, [step("s", "a.j2")])
    (tmp_path / "lint.yaml").write_text("banned_word: [爆款]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["validate"], env={"SIYU_PROJECT_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "lint.yaml:1:1: unknown key 'banned_word'" in result.output
    assert "'banned_words'" in result.output


def test_find_words_skips_allowed_compounds() -> None:
    assert find_words("最后一天 最好", ("最",), ("最后",)) == [(1, 6, "最")]


def test_unreachable_nodes_of_a_graph() -> None:
    graph = JourneyGraph(
        "j",
        [Node("entry", "entry", "entry"), Node("a", "step", "a"), Node("b", "step", "b")],
        [Edge("entry", "a")],
    )
    assert [n.id for n in unreachable(graph)] == ["b"]


def test_unused_template_syntax_is_checked_and_exit_status_is_1(tmp_path: Path) -> None:
    make_project(tmp_path, {"a.j2": "hi", "unused.j2": "{{ customer.name "}, [step("s", "a.j2")])
    result = CliRunner().invoke(app, ["validate"], env={"SIYU_PROJECT_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "unused.j2:1:1: template-syntax" in result.output
    assert "1 error in 1 file" in result.output


def test_unknown_channel_suggestion_through_the_command(tmp_path: Path) -> None:
    make_project(tmp_path, {"a.j2": "hi"}, [step("s", "a.j2", send="wecon")])
    result = CliRunner().invoke(app, ["validate"], env={"SIYU_PROJECT_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "t.yaml:8:11: unknown-channel" in result.output
    assert "did you mean 'wecom'" in result.output


def test_a_broken_channels_file_is_reported_not_replaced(tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from siyu.cli.main import app

    shutil.copytree(ROOT / "journeys", tmp_path / "journeys")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    text = (ROOT / "channels.yaml").read_text(encoding="utf-8")
    (tmp_path / "channels.yaml").write_text(
        text.replace("    sender: zhangsan\n", "    sendr: zhangsan\n", 1), encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["validate"], env={"SIYU_PROJECT_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "sendr" in result.output and "did you mean 'sender'" in result.output


def test_validate_needs_no_channel_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A marketer's machine has a production channels.yaml (remote APIs) and no secrets:
    validate reads channel names and identity kinds from the config, builds no adapter."""
    import shutil

    shutil.copytree(ROOT / "journeys", tmp_path / "journeys")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    text = (ROOT / "channels.yaml").read_text(encoding="utf-8")
    text = text.replace("allow_remote: false", "allow_remote: true").replace(
        "base_url: http://127.0.0.1:8765", "base_url: https://api.example.invalid"
    )
    (tmp_path / "channels.yaml").write_text(text, encoding="utf-8")
    for name in ("SIYU_WECOM_CONTACT_SECRET", "SIYU_ALIYUN_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["validate"], env={"SIYU_PROJECT_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "ok first-purchase-care" in result.output
