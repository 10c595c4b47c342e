"""Readable schedules: `schedule:` and `entry.calendar:` take cron or a plain form, which the
journey carries as the cron expression it means (so Prefect's schedules and `siyu deploy`
see cron); a form that means nothing is refused at its position with the forms listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from siyu.language.problems import SpecError
from siyu.language.schedules import ScheduleError, to_cron
from tests.journey_files import write_journey
from tests.recording_channel import recording_channels


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 10 * * MON", "0 10 * * MON"),
        ("every 15m", "*/15 * * * *"),
        ("every 15 minutes", "*/15 * * * *"),
        ("every minute", "* * * * *"),
        ("每15分钟", "*/15 * * * *"),
        ("every 2h", "0 */2 * * *"),
        ("every hour", "0 * * * *"),
        ("每2小时", "0 */2 * * *"),
        ("daily at 10:00", "0 10 * * *"),
        ("Every day at 9:30", "30 9 * * *"),
        ("每天 10:00", "0 10 * * *"),
        ("every wednesday at 10:00", "0 10 * * 3"),
        ("every Sundays at 08:05", "5 8 * * 0"),
        ("每周三 10:00", "0 10 * * 3"),
        ("每周日 20:00", "0 20 * * 0"),
        ("every month on day 1 at 10:00", "0 10 1 * *"),
        ("每月1日 10:00", "0 10 1 * *"),
    ],
)
def test_each_readable_form_means_one_cron_expression(text: str, cron: str) -> None:
    assert to_cron(text) == cron


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("every 7m", "must divide 60"),
        ("every 5h", "must divide 24"),
        ("every 5 days", "is not a schedule"),
        ("daily at 25:00", "not a time of day"),
        ("every funday at 10:00", "not a day of the week"),
        ("每月31日 10:00", "use 1 to 28"),
    ],
)
def test_forms_that_mean_nothing_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ScheduleError, match=says):
        to_cron(text)


JOURNEY = """\
journey: readable
schedule: {schedule}
entry:
  calendar: {calendar}
  audience: "member_level = '金卡'"
steps:
  - {{id: hello, send: sms, template: hello.j2}}
"""


def test_a_journey_carries_readable_schedules_as_cron(tmp_path: Path) -> None:
    text = JOURNEY.format(schedule="every 30m", calendar="每周三 10:00")
    spec = write_journey(tmp_path, recording_channels(), text)
    assert spec.schedule == "*/30 * * * *"
    assert spec.entry.calendar == "0 10 * * 3"


def test_a_schedule_that_means_nothing_is_refused_at_its_line(tmp_path: Path) -> None:
    text = JOURNEY.format(schedule="every 5 days", calendar="'0 10 * * 3'")
    with pytest.raises(SpecError) as caught:
        write_journey(tmp_path, recording_channels(), text)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (2, 11)
    assert "'every 5 days' is not a schedule" in problem.message
    assert "every day at 10:00" in problem.message and "每天 10:00" in problem.message
