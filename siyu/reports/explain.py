"""Why did customer X get, or not get, each message of a journey? Every decision the engine
recorded in the ledger, in words, with times in the customer's own time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.engine.versions import spec_of
from siyu.language.durations import format_duration
from siyu.language.spec import Anchor, JourneySpec
from siyu.storage.models import Customer, Delivery, Enrollment, Journey, ReasonCode, reason_text
from siyu.timezones import is_time_zone
from siyu.timezones import zone as time_zone


def _reason_words(code: ReasonCode | None, detail: str | None, channel: str) -> str:
    """A ledger row's reason in words; a reason without words of its own as written."""
    if code is None:
        return ""
    detail = detail or ""
    words = {
        "exited": "the customer did the exit event (e.g. repurchased) before it was sent",
        "holdout": "the customer is in the holdout group: measured, never messaged",
        "expired": "its window had passed when it came due; a message is never sent late",
        "condition_false": "its `if:` condition did not hold at send time",
        "no_consent": f"no '{detail}' consent",
        "suppressed": f"the customer opted out of {channel} (or of every channel)",
        "no_address": f"no {detail} on file for {channel}",
        "no_date": f"the date column {detail} is empty",
        "refused": f"the provider says the customer refused ({detail}); {channel} is "
        "suppressed for them from now on",
        "quiet_hours": "quiet hours",
        "fatigue": "fatigue pause after unanswered messages",
        "cap": f"frequency cap '{detail}' reached",
        "retry": f"the channel failed transiently ({detail})",
        "circuit_open": f"{detail}'s circuit breaker is open (too many failures); held, "
        "sent once it closes",
        "render_error": f"the template failed: {detail}",
        "bad_customer_data": f"the customer's {detail} cannot be used (fix it in the CRM "
        "data); not sent",
        "channel_auth": f"{channel}'s provider refused its credentials ({detail}); held, "
        "sent once the secret is fixed",
        "channel_config": f"{channel}'s provider refused its configuration ({detail}); held, "
        "sent once it is fixed",
    }
    return words.get(code) or reason_text(code, detail or None) or ""


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "?"


def explain(session: Session, spec: JourneySpec, customer_id: int, now: datetime) -> list[str]:
    customer = session.get(Customer, customer_id)
    if customer is None:
        return [f"no customer with id {customer_id}"]
    # A zone that does not exist (the customer's messages failed `bad_customer_data`) is not
    # repeated: times are shown in the journey's zone instead.
    name = customer.timezone if is_time_zone(customer.timezone) else spec.timezone
    zone = time_zone(name)
    lines = [f"customer {customer_id} in journey '{spec.journey}' (times in {zone.key})"]
    enrollments = session.scalars(
        select(Enrollment)
        .where(Enrollment.journey_name == spec.journey, Enrollment.customer_id == customer_id)
        .order_by(Enrollment.entered_at)
    ).all()
    if not enrollments:
        lines.append(
            "  never entered: no entry event matched since the journey started, or "
            "the re-entry policy kept them out"
        )
        return lines
    for enrollment in enrollments:
        journey = session.get(Journey, enrollment.journey_id)
        version_spec = (
            spec if journey is None or journey.version == spec.version else spec_of(journey)
        )
        head = (
            f"  entered {_when(enrollment.entered_at, zone)} ({enrollment.entry_key}), "
            f"version {journey.version if journey else '?'}, {enrollment.status}"
        )
        if enrollment.exited_at:
            head += f" at {_when(enrollment.exited_at, zone)} ({enrollment.exit_reason})"
        if enrollment.goal_reached_at:
            head += f"; goal reached {_when(enrollment.goal_reached_at, zone)}"
        if enrollment.holdout:
            head += "; in the holdout"
        lines.append(head)
        rows = {
            d.step_id: d
            for d in session.scalars(
                select(Delivery).where(Delivery.enrollment_id == enrollment.id)
            )
        }
        for step in version_spec.steps:
            lines.append(
                f"    {step.id} ({step.send}): "
                f"{_step_line(step, rows.get(step.id), enrollment, zone, now)}"
            )
    return lines


def _step_line(
    step: object, row: Delivery | None, enrollment: Enrollment, zone: ZoneInfo, now: datetime
) -> str:
    from siyu.language.spec import Step

    assert isinstance(step, Step)
    if row is None:
        if enrollment.status == "exited":
            return "not sent: the customer left the journey first"
        if isinstance(step.at, Anchor):
            return (
                f"not due yet: {format_duration(step.at.offset)} from {step.at.from_}"
                f"{' (yearly)' if step.at.annual else ''}"
            )
        due = enrollment.entered_at + step.at
        return (
            f"not due yet: due {_when(due, zone)}"
            if due > now
            else "due; it will be decided at the next tick"
        )
    channel = row.channel
    variant = f", variant {row.variant}" if row.variant else ""
    if row.status == "sent":
        return (
            f"sent {_when(row.sent_at, zone)}{variant} (attempt {row.attempts}, provider id "
            f"{row.provider_message_id or '-'})"
        )
    if row.status == "pending":
        return (
            f"handed to the channel {_when(row.updated_at, zone)}{variant}; waiting for a "
            "staff member to confirm it in WeCom"
        )
    if row.status == "deferred" and row.reason_code == "in_doubt":
        return (
            f"in doubt since {_when(row.updated_at, zone)}, held (never sent again blind): "
            f"{row.reason_detail or ''}"
        )
    if row.status == "deferred":
        return (
            f"deferred: {_reason_words(row.reason_code, row.reason_detail, channel)} until "
            f"{_when(row.next_attempt_at, zone)}"
        )
    if row.status == "sending":
        return (
            "being sent (or interrupted mid-send): it is sent again with the same "
            "idempotency key, never twice"
        )
    verb = "skipped" if row.status == "skipped" else "failed"
    words = _reason_words(row.reason_code, row.reason_detail, channel)
    return f"{verb} {_when(row.updated_at, zone)}: {words}"
