"""Metric alert rules: churn above 5 % three days running starts the recall journey once;
WeCom messages left without a response create one follow-up task per customer; rules that
name an unknown journey are reported with their position and a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.alerts.config import AlertsConfig, Rule, load_alerts
from siyu.alerts.rules import evaluate_rules
from siyu.language.problems import SpecError
from siyu.storage.models import (
    AlertEvent,
    Event,
    FollowUpTask,
    SegmentMembership,
)
from tests.conftest import Shop, local
from tests.measure.ledger_rows import Row, write_rows

CHURN = AlertsConfig(
    rules=[Rule(name="churn", metric="churn_rate", above=0.05, days=3, start_journey="recall")]
)


def stays(
    sessions: sessionmaker[Session], rows: list[tuple[int, str, float, float | None]]
) -> None:
    with sessions() as session, session.begin():
        session.execute(
            insert(SegmentMembership),
            [
                dict(
                    customer_id=c,
                    segment=s,
                    family="lifecycle",
                    entered_at=local(entered),
                    left_at=local(left) if left is not None else None,
                )
                for c, s, entered, left in rows
            ],
        )


def test_churn_above_the_threshold_three_days_running_starts_the_journey_once(
    sessions: sessionmaker[Session], shop: Shop
) -> None:
    customers = [shop.customer(f"客{i}") for i in range(40)]
    # 40 customers in `growing` from day 0; 3 of them churn on each of days 1, 2, 3 and 4
    # (7.5 %, 8.1 %, 8.8 %, 9.7 % of those not yet churned)
    rows: list[tuple[int, str, float, float | None]] = []
    for i, customer in enumerate(customers):
        churn_day = 1 + i // 3 if i < 12 else None
        rows.append((customer, "growing", -1, churn_day + 0.5 if churn_day else None))
        if churn_day:
            rows.append((customer, "churned", churn_day + 0.5, None))
    stays(sessions, rows)
    started: list[str] = []
    fired = []
    for day in range(1, 8):  # evaluated each morning for the day before
        with sessions() as session, session.begin():
            outcome = evaluate_rules(session, CHURN, local(day + 1, 2), started.append)[0]
        fired.append(outcome.fired)
        assert outcome.breached == (day <= 4)
    assert fired == [False, False, True, False, False, False, False]
    assert started == ["recall"]
    with sessions() as session:
        event = session.scalars(select(AlertEvent)).one()
    assert event.detail["day"] == "2026-11-05" and event.action == "started recall"


def test_unanswered_wecom_messages_make_one_follow_up_task_per_customer(
    sessions: sessionmaker[Session], shop: Shop
) -> None:
    customers = [shop.customer(f"客{i}") for i in range(10)]
    config = AlertsConfig(
        rules=[Rule(name="unread", metric="wecom_unread_rate", above=0.15, follow_up=True)]
    )
    write_rows(sessions, [Row(c, "wecom", "sent", local(1, 10), step_id="care") for c in customers])
    with sessions() as session, session.begin():
        for customer in customers[:7]:  # seven answer within 48 h; three never do
            session.add(Event(customer_id=customer, name="link_clicked", occurred_at=local(2)))
    for day in (3, 4):  # day 1's sends are judged on day 3 (48 h later); again on day 4
        with sessions() as session, session.begin():
            outcome = evaluate_rules(session, config, local(day + 1, 2), lambda _: None)[0]
        if day == 3:
            assert outcome.value == pytest.approx(0.3) and outcome.fired
            assert outcome.follow_ups == 3
    with sessions() as session:
        tasks = session.scalars(select(FollowUpTask.customer_id)).all()
    assert sorted(tasks) == customers[7:]


def test_a_rule_naming_an_unknown_journey_is_reported_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "rules:\n  - name: churn\n    metric: churn_rate\n    above: 5%\n"
        "    start_journey: churn-recal\n"
    )
    with pytest.raises(SpecError) as error:
        load_alerts(path, ["churn-recall", "first-purchase-care"])
    problem = error.value.problems[0]
    assert (problem.line, problem.column, problem.code) == (5, 20, "unknown-journey")
    assert "did you mean 'churn-recall'?" in problem.message


def test_a_misspelt_key_and_a_rule_without_action_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "breaker:\n  failure_rat: 20%\nrules:\n  - {name: r, metric: churn_rate, above: 5%}\n"
    )
    with pytest.raises(SpecError) as error:
        load_alerts(path)
    messages = {(p.line, p.message) for p in error.value.problems}
    assert any(line == 2 and "did you mean 'failure_rate'" in m for line, m in messages)
    assert any(line == 4 and "needs an action" in m for line, m in messages)
