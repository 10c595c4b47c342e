"""Validation messages a marketer understands: durations in the YAML's own notation, the caret
on the key at fault, the location named once, and the fix when it is obvious."""

from __future__ import annotations

from pathlib import Path

import pytest

from siyu.language.loader import Catalog, check_journey_file
from siyu.language.problems import Problem, format_problem

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = {"wecom", "wecom_group_invite", "service_account", "sms", "email", "webhook"}
FIRST_PURCHASE = (ROOT / "journeys" / "first_purchase.yaml").read_text(encoding="utf-8")


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    path = tmp_path / "journey.yaml"
    path.write_text(text, encoding="utf-8")
    _spec, problems = check_journey_file(path, Catalog(CHANNELS, ROOT / "templates"))
    return problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def caret_column(rendered: str) -> int:
    """1-based column of the caret in a rendered problem's excerpt."""
    caret = next(line for line in rendered.splitlines() if line.rstrip().endswith("^"))
    return caret.index("^") - len("       | ") + 1


def line_of(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of `needle` in `text`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


def test_a_step_moved_past_its_deadline(tmp_path: Path) -> None:
    """The issue's case: day7-content moved from 7d to 8d while `within` stays 8d."""
    text = FIRST_PURCHASE.replace("    at: 7d\n    within: 8d", "    at: 8d\n    within: 8d")
    assert text != FIRST_PURCHASE
    problem = only(problems_of(tmp_path, text))
    assert problem.message == (
        "step 'day7-content': `within` (8d) must be later than `at` (8d), or the step is "
        "never sent; move `within` to at least 9d, or remove it"
    )
    assert (problem.line, problem.column) == line_of(text, "within: 8d")
    rendered = format_problem(problem)
    assert caret_column(rendered) == line_of(text, "within: 8d")[1]
    assert rendered.count("step 'day7-content'") == 1
    assert "days," not in rendered and "0:00:00" not in rendered


def test_hours_are_shown_as_written(tmp_path: Path) -> None:
    text = FIRST_PURCHASE.replace("    at: 1d\n    within: 3d", "    at: 36h\n    within: 30h")
    problem = only(problems_of(tmp_path, text))
    assert problem.message == (
        "step 'day3-care': `within` (1d6h) must be later than `at` (1d12h), or the step is "
        "never sent; move `within` to at least 1d13h, or remove it"
    )
    assert (problem.line, problem.column) == line_of(text, "within: 30h")


def test_an_anchor_offset_past_the_deadline(tmp_path: Path) -> None:
    text = FIRST_PURCHASE.replace(
        "    at: 14d\n    within: 16d",
        "    at: {from: event.occurred_at, offset: 20d}\n    within: 16d",
    )
    problem = only(problems_of(tmp_path, text))
    assert problem.message == (
        "step 'day14-repurchase': `within` (16d) must be later than the anchor's `offset` "
        "(20d), or the step is never sent; move `within` to at least 21d, or remove it"
    )
    assert (problem.line, problem.column) == line_of(text, "within: 16d")


def test_a_negative_at_points_at_at(tmp_path: Path) -> None:
    text = FIRST_PURCHASE.replace("    at: 1d\n    within: 3d", "    at: -2d\n    within: 3d")
    problem = only(problems_of(tmp_path, text))
    assert problem.message.startswith("step 'day3-care': `at` (-2d) is negative;")
    assert problem.message.count("day3-care") == 1
    assert (problem.line, problem.column) == line_of(text, "at: -2d")


def test_duplicate_variant_ids_point_at_variants(tmp_path: Path) -> None:
    text = FIRST_PURCHASE.replace(
        "    send: sms\n",
        "    send: sms\n    variants:\n      - {id: a}\n      - {id: a}\n",
    )
    problem = only(problems_of(tmp_path, text))
    assert problem.message == "step 'day14-repurchase': variant id 'a' is used twice"
    assert (problem.line, problem.column) == line_of(text, "variants:")


def test_entry_keys_that_do_not_belong(tmp_path: Path) -> None:
    text = FIRST_PURCHASE.replace(
        'entry:\n  event: order_paid\n  where: "order_seq = 1"',
        "entry:\n  event: order_paid\n  audience: \"city = 'x'\"",
    )
    problem = only(problems_of(tmp_path, text))
    assert problem.message == (
        "'entry': `audience:` belongs to calendar entries; use `where:` on the event"
    )
    assert (problem.line, problem.column) == line_of(text, "audience:")


def test_a_migration_to_an_unknown_step_suggests_one(tmp_path: Path) -> None:
    text = FIRST_PURCHASE.replace(
        "timezone: Asia/Shanghai\n",
        "timezone: Asia/Shanghai\nversion: 2\nmigrate:\n  policy: move\n  steps:\n"
        "    day7: day7-contnet\n",
    )
    problem = only(problems_of(tmp_path, text))
    assert problem.message == (
        "migrate.steps maps 'day7' to 'day7-contnet', which is not a step — did you mean "
        "'day7-content'?"
    )
    assert (problem.line, problem.column) == line_of(text, "day7: day7-contnet")


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("    at: 1d\n", "    at: 1x\n", "at: 1x"),
        ("  within: 30d\n", "  within: soon\n", "within: soon"),
    ],
)
def test_bad_durations_name_the_key_once(tmp_path: Path, old: str, new: str, needle: str) -> None:
    text = FIRST_PURCHASE.replace(old, new, 1)
    problem = only(problems_of(tmp_path, text))
    assert problem.code == "bad-duration"
    assert "is not a duration; write a number and a unit: 90s, 15m, 12h, 3d, 2w" in (
        problem.message
    )
    line, column = line_of(text, needle)
    assert problem.line == line
    assert problem.column == column + needle.index(" ") + 1  # on the value


def test_no_problem_message_repeats_its_prefix(tmp_path: Path) -> None:
    """Every message a model check raises, shown: the location appears once."""
    cases = [
        FIRST_PURCHASE.replace("    at: 7d\n    within: 8d", "    at: 8d\n    within: 8d"),
        FIRST_PURCHASE.replace("    at: 1d\n    within: 3d", "    at: -2d\n    within: 3d"),
        FIRST_PURCHASE.replace(
            "    send: sms\n", "    send: sms\n    variants: [{id: a}, {id: a}]\n"
        ),
    ]
    for text in cases:
        (problem,) = problems_of(tmp_path, text)
        head, _, rest = problem.message.partition(": ")
        assert head not in rest, problem.message


ENTRY = '  where: "order_seq = 1"'


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        (
            ENTRY,
            f"{ENTRY}\n  reentry: sometimes",
            "sometimes",
            "'entry.reentry': 'sometimes' is not a re-entry policy; write never, always or "
            "{after: 30d}",
        ),
        (
            "timezone: Asia/Shanghai\n",
            "timezone: Asia/Shanghai\nholdout: 150%\n",
            "150%",
            "'holdout': '150%' is not a share from 0% to below 100%; write e.g. 10%",
        ),
        (
            "    at: 14d",
            "    at: {from: orders.paid_at}",
            "orders.paid_at",
            "step 'day14-repurchase' key 'at.from': 'orders.paid_at' is not a date column; "
            "write event.COLUMN or customer.COLUMN",
        ),
    ],
    ids=["reentry", "holdout", "anchor"],
)
def test_one_plain_message_per_mistake(
    tmp_path: Path, old: str, new: str, needle: str, message: str
) -> None:
    """No Python type names (ReentryAfter, literal[...]), one message for one wrong value."""
    text = FIRST_PURCHASE.replace(old, new, 1)
    problem = only(problems_of(tmp_path, text))
    assert problem.message == message
    assert (problem.line, problem.column) == line_of(text, needle)


def test_a_journey_without_steps(tmp_path: Path) -> None:
    text = FIRST_PURCHASE[: FIRST_PURCHASE.index("steps:")] + "steps: []\n"
    assert only(problems_of(tmp_path, text)).message == "'steps': needs at least 1 step"


def test_a_duration_without_unit_is_a_duration_problem(tmp_path: Path) -> None:
    text = FIRST_PURCHASE.replace("  within: 30d", "  within: 30")
    problem = only(problems_of(tmp_path, text))
    assert problem.code == "bad-duration"
    assert problem.message.startswith("'goal.within': '30' has no unit; write a number and a unit")
