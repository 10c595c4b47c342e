"""Completion: active enrollments whose every step reached a final status are `completed`."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from siyu.language.spec import Anchor, JourneySpec
from siyu.storage.models import TERMINAL_STATUSES, Delivery, DeliveryStatus, Enrollment, Journey

log = logging.getLogger(__name__)


def complete_finished(session: Session, spec: JourneySpec, now: datetime) -> int:
    """Active enrollments whose every step (of their own version) reached a final status are
    `completed`: those with at least as many final ledger rows as their version has steps.

    Counted per active enrollment, so a tick reads the journey's active enrollments, not the
    ledger of every enrollment that ever finished; and when every step of the version is timed
    (`at:` after entry), only those entered before its last step came due: a timed step's
    ledger row is written only once the step is due (siyu/engine/scans.py), so a younger
    enrollment cannot have every step's row yet. (At 1M active enrollments, none old enough,
    this phase read every one of them: 0.5 s of each idle tick; `python -m bench.idle_tick`.)"""
    done = 0
    versions = session.execute(
        select(Journey.id, Journey.version).where(Journey.name == spec.journey)
    ).all()
    for journey_id, version in versions:
        steps = spec.steps if version == spec.version else _spec_of_id(session, journey_id).steps
        params = {"version_id": journey_id, "name": spec.journey, "steps": max(len(steps), 1)}
        offsets = [step.at for step in steps if not isinstance(step.at, Anchor)]
        if steps and len(offsets) == len(steps):
            params["cutoff"] = now - max(offsets)
            result = session.execute(_COMPLETE_OLD_ENOUGH, params)
        else:
            result = session.execute(_COMPLETE, params)
        done += int(getattr(result, "rowcount", 0) or 0)
    return done


def _spec_of_id(session: Session, journey_id: int) -> JourneySpec:
    return JourneySpec.model_validate(
        session.scalar(select(Journey.spec).where(Journey.id == journey_id))
    )


# An enrollment's rows always carry its journey's name (both are written from the same spec),
# so filtering enrollments by name too changes nothing and lets the
# (journey_name, status, journey_id) index find the active ones. `steps` is at least 1: an
# enrollment without any final row was never completed (it had no group in the former
# GROUP BY ... HAVING form). Any ledger rows first, final ones second: the first count reads
# only the unique (enrollment_id, step_id) index, and most active enrollments are still
# waiting for a step that has no row yet, so the second (which reads the rows) rarely runs.
_ROWS = select(func.count()).where(Delivery.enrollment_id == Enrollment.id).scalar_subquery()
_FINAL_ROWS = (
    select(func.count())
    .where(
        Delivery.enrollment_id == Enrollment.id,
        Delivery.journey_name == bindparam("name"),
        Delivery.status.in_(TERMINAL_STATUSES),
    )
    .scalar_subquery()
)
_COMPLETE = (
    update(Enrollment)
    .where(
        Enrollment.journey_name == bindparam("name"),
        Enrollment.status == "active",
        Enrollment.journey_id == bindparam("version_id"),
        _ROWS >= bindparam("steps"),
        _FINAL_ROWS >= bindparam("steps"),
    )
    .values(status="completed")
    .execution_options(synchronize_session=False)
)
_COMPLETE_OLD_ENOUGH = _COMPLETE.where(
    Enrollment.entered_at <= bindparam("cutoff", type_=Enrollment.entered_at.type)
)


def messages_in_flight(
    session: Session, journey: str, now: datetime
) -> tuple[int, datetime | None]:
    """The journey's messages still `sending` under a live lease once the tick's steps are
    done, and when the last lease ends: an attempt claimed them and did not finish (its
    process or its database connection died after the claim). Until the lease ends nobody
    sends them; after it, a tick sends them again under the same idempotency key. A tick
    that leaves some says so (a warning in the run's logs, `in_flight` in its results)."""
    count, until = session.execute(
        select(func.count(), func.max(Delivery.next_attempt_at)).where(
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.next_attempt_at > now,
            Delivery.journey_name == journey,
        )
    ).one()
    return int(count), until


def warn_in_flight(journey: str, count: int, until: datetime | None) -> None:
    if count:
        log.warning(
            "%s: %d message(s) still in flight after this tick: an attempt claimed them and "
            "did not finish; a tick after their lease ends (%s UTC) sends them under the same "
            "idempotency key",
            journey,
            count,
            until.isoformat(timespec="seconds") if until else "?",
        )
