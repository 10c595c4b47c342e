"""A marketer's mistakes in a journey file are reported with file:line:column, in plain words,
with the likely fix — all of them at once, never only the first."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from siyu.language.loader import Catalog, check_journey_file, load_journey
from siyu.language.problems import Problem, SpecError

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = {"wecom", "wecom_group_invite", "service_account", "sms", "email", "webhook"}

GOOD = """\
journey: care
entry:
  event: order_paid
  where: "order_seq = 1"
steps:
  - id: hello
    at: 1d
    send: wecom
    template: day3_care.j2
"""


def check(tmp_path: Path, text: str) -> list[Problem]:
    path = tmp_path / "journey.yaml"
    path.write_text(text, encoding="utf-8")
    _spec, problems = check_journey_file(path, Catalog(CHANNELS, ROOT / "templates"))
    return problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def test_the_example_journeys_load() -> None:
    spec = load_journey(
        ROOT / "journeys" / "first_purchase.yaml",
        Catalog(CHANNELS | {"miniprogram"}, ROOT / "templates"),
    )
    assert [s.id for s in spec.steps] == [
        "join-group",
        "day3-care",
        "day7-content",
        "day14-repurchase",
    ]
    assert spec.step("day3-care").within == timedelta(days=3)
    assert spec.step("day14-repurchase").at == timedelta(days=14)


def test_a_good_file_has_no_problems(tmp_path: Path) -> None:
    assert check(tmp_path, GOOD) == []


def test_unknown_key_names_line_column_and_the_likely_key(tmp_path: Path) -> None:
    problem = only(check(tmp_path, GOOD.replace("    at: 1d\n", "    at: 1d\n    tempalte: x\n")))
    assert (problem.line, problem.column, problem.code) == (8, 5, "unknown-key")
    assert "unknown key 'tempalte' in step 'hello'" in problem.message
    assert "did you mean 'template'?" in problem.message


def test_bad_duration(tmp_path: Path) -> None:
    problem = only(check(tmp_path, GOOD.replace("at: 1d", "at: 3 days")))
    assert (problem.line, problem.column, problem.code) == (7, 9, "bad-duration")
    assert "'3 days' is not a duration" in problem.message and "3d" in problem.message


def test_unknown_channel_suggests_the_right_one(tmp_path: Path) -> None:
    problem = only(check(tmp_path, GOOD.replace("send: wecom", "send: wecon")))
    assert (problem.line, problem.code) == (8, "unknown-channel")
    assert "unknown channel 'wecon' — did you mean 'wecom'?" in problem.message


def test_missing_template(tmp_path: Path) -> None:
    problem = only(check(tmp_path, GOOD.replace("day3_care.j2", "day3_cair.j2")))
    assert (problem.line, problem.code) == (9, "unknown-template")
    assert "did you mean 'day3_care.j2'?" in problem.message


def test_wrong_column_in_where(tmp_path: Path) -> None:
    problem = only(check(tmp_path, GOOD.replace("order_seq = 1", "order_sequence = 1")))
    assert (problem.line, problem.code) == (4, "unknown-column")
    assert "unknown column 'order_sequence'" in problem.message and "order_seq" in problem.message


@pytest.mark.parametrize(
    "where",
    [
        "order_seq = 1; DROP TABLE orders",
        "customer_id IN (SELECT id FROM customers)",
        "order_seq = 1 UNION SELECT 1",
    ],
)
def test_where_must_be_one_plain_condition(tmp_path: Path, where: str) -> None:
    problems = check(tmp_path, GOOD.replace("order_seq = 1", where))
    assert problems and all(p.code == "bad-sql" for p in problems)


def test_missing_key_and_duplicate_step(tmp_path: Path) -> None:
    text = (
        GOOD.replace("    send: wecom\n", "")
        + "  - id: hello\n    send: sms\n    template: day14_coupon.j2\n"
    )
    problems = check(tmp_path, text)
    assert sorted(p.code for p in problems) == ["duplicate-step", "missing-key"]
    missing = next(p for p in problems if p.code == "missing-key")
    assert "step 'hello' needs the key 'send'" in missing.message


def test_all_problems_are_reported_sorted_by_line(tmp_path: Path) -> None:
    text = GOOD.replace("order_seq = 1", "order_sequence = 1").replace("send: wecom", "send: wecon")
    text = text.replace("at: 1d", "at: 1 day")
    problems = check(tmp_path, text)
    assert [p.line for p in problems] == [4, 7, 8]


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    problem = only(
        check(tmp_path, GOOD.replace('  where: "order_seq = 1"', '  where: "order_seq = 1'))
    )
    assert problem.code == "bad-yaml" and problem.line >= 4


def test_template_syntax_error_points_into_the_template(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "broken.j2").write_text(
        "您好\n{{ customer.name }\n", encoding="utf-8"
    )
    path = tmp_path / "j.yaml"
    path.write_text(GOOD.replace("day3_care.j2", "broken.j2"), encoding="utf-8")
    _spec, problems = check_journey_file(path, Catalog(CHANNELS, tmp_path / "templates"))
    problem = only(problems)
    assert problem.code == "template-syntax" and problem.file.endswith("broken.j2")
    assert problem.line == 2


def test_unknown_template_variable(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("{{ custommer.name }}", encoding="utf-8")
    path = tmp_path / "j.yaml"
    path.write_text(GOOD.replace("day3_care.j2", "t.j2"), encoding="utf-8")
    _spec, problems = check_journey_file(path, Catalog(CHANNELS, tmp_path / "templates"))
    assert "did you mean 'customer'?" in only(problems).message


def test_load_journey_raises_with_a_readable_report(tmp_path: Path) -> None:
    path = tmp_path / "journey.yaml"
    path.write_text(GOOD.replace("send: wecom", "send: wecon"), encoding="utf-8")
    with pytest.raises(SpecError) as raised:
        load_journey(path, Catalog(CHANNELS, ROOT / "templates"))
    report = str(raised.value)
    assert f"{path}:8:11: unknown-channel" in report
    assert "    8 |     send: wecon" in report and "^" in report
    assert report.endswith("1 error in 1 file")


@pytest.mark.parametrize(
    "bad, code",
    [
        ("journey: Care Journey", "bad-value"),
        ("timezone: Asia/Shanghia", "bad-value"),
        ('schedule: "every day"', "bad-value"),
        ('quiet_hours: "9pm-8am"', "bad-value"),
    ],
)
def test_bad_values(tmp_path: Path, bad: str, code: str) -> None:
    key = bad.split(":")[0]
    text = GOOD.replace("journey: care", "journey: care" if key != "journey" else bad)
    if key != "journey":
        text += bad + "\n"
    problem = only(check(tmp_path, text))
    assert problem.code == code and key in problem.message


def test_every_example_journey_validates() -> None:
    from siyu.project import Project

    specs, problems = Project.find(ROOT).check_all()
    assert problems == []
    assert set(specs) >= {
        "first-purchase-care",
        "browse-offer",
        "birthday-privilege",
        "renewal-reminder",
        "weekly-topic-day",
    }


def test_localtime_filter_shows_the_customers_date() -> None:
    from datetime import UTC, datetime

    from siyu.engine.render import render_message

    (ROOT / "templates").is_dir()
    rendered = render_message(
        ROOT / "templates",
        "renewal_notice.j2",
        {
            "customer": {"name": "林", "timezone": "Asia/Shanghai"},
            "event": {"plan": "年卡", "renews_at": datetime(2026, 12, 1, 16, 30, tzinfo=UTC)},
        },
    )
    assert rendered.error is None
    assert "2026-12-02 自动续费" in (rendered.body or "")  # 00:30 the next day in Shanghai
