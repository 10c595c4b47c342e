"""`siyu preview`: one step's message for one customer, rendered by the engine's own
renderer (siyu.engine.render) with the customer's row and their entry event, personal data masked.
With no database, sample data stands in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.customer_ref import find_customer
from siyu.engine.marketer_sql import marketer_read
from siyu.engine.render import render_message
from siyu.language.spec import JourneySpec, Step
from siyu.language.where_clause import tick_date, to_dialect
from siyu.preview.masking import mask_text, mask_value
from siyu.storage.models import ChannelIdentity, Customer, Enrollment
from siyu.storage.sources import CUSTOMER_COLUMNS, SOURCES, entry_columns

SAMPLE_CUSTOMER: dict[str, Any] = {
    "id": 0,
    "name": "王小明",
    "gender": "男",
    "city": "上海",
    "member_level": "银卡",
    "birthday": date(1990, 5, 20),
    "timezone": "Asia/Shanghai",
}
SAMPLE_EVENT: dict[str, Any] = {
    "event_key": "order:0",
    "customer_id": 0,
    "occurred_at": datetime(2026, 9, 1, 2, 30, tzinfo=UTC),
    "order_id": 0,
    "order_no": "YX202609010000001",
    "order_seq": 1,
    "amount": Decimal("199.00"),
    "category": "护肤",
    "store": "小程序商城",
    "city": "上海",
    "member_level": "银卡",
    "properties": {},
}


@dataclass(frozen=True)
class Preview:
    step: Step
    who: str  # masked description of the customer, or "sample data"
    body: str | None
    error: str | None
    length: int = 0  # characters of the message as sent (the masked body may differ)


def _entry_event(
    session: Session, spec: JourneySpec, customer_id: int, now: datetime
) -> dict[str, Any] | None:
    """The event that enrolled the customer, else their latest event that would enroll them
    at `now` (`current_date` in `entry.where` is its date in the journey's zone, as a tick's
    is). Calendar journeys have no entry event."""
    if spec.entry.event is None:
        return None
    source = SOURCES[spec.entry.event].select().subquery("raw")
    query = select(source).where(source.c.customer_id == customer_id)
    key = session.scalar(
        select(Enrollment.entry_key).where(
            Enrollment.journey_name == spec.journey, Enrollment.customer_id == customer_id
        )
    )
    if key is not None:
        query = query.where(source.c.event_key == key)
    elif spec.entry.where:  # the journey's own SQL: read-only, under the statement timeout
        dialect = session.get_bind().dialect.name
        today = tick_date(now, spec.timezone)
        query = query.where(text(to_dialect(spec.entry.where, dialect, today)))
        readers = sessionmaker(session.get_bind())
        with marketer_read(readers, spec, "entry.where", None) as reader:
            found = reader.execute(query.order_by(source.c.occurred_at.desc()).limit(1))
            row = found.mappings().first()
        return dict(row) if row else None
    row = session.execute(query.order_by(source.c.occurred_at.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def has_database(session: Session) -> bool:
    return bool(inspect(session.get_bind()).has_table("customers"))


def preview_customer(
    session: Session,
    spec: JourneySpec,
    step: Step,
    templates_dir: Path,
    ref: str,
    now: datetime | None = None,
) -> Preview:
    """The step's message for the customer `ref` as a tick at `now` (default: the clock's
    time) would send it."""
    customer = find_customer(session, ref)
    row = {c: getattr(customer, c) for c in CUSTOMER_COLUMNS}
    event = _entry_event(session, spec, customer.id, now or datetime.now(UTC))
    identities = dict(
        session.execute(
            select(ChannelIdentity.kind, ChannelIdentity.value).where(
                ChannelIdentity.customer_id == customer.id
            )
        )
        .tuples()
        .all()
    )
    known = {"name": customer.name, **identities}
    if customer.external_id:
        known["external_id"] = customer.external_id
    who = f"customer {customer.id} ({mask_name_and_id(customer)})"
    if event is None:
        who += f", no '{spec.entry.event}' entry event: sample event data used"
    return _render(spec, step, templates_dir, row, event or SAMPLE_EVENT, who, known)


def mask_name_and_id(customer: Customer) -> str:
    external = mask_value("id", customer.external_id) if customer.external_id else "-"
    return f"{mask_value('name', customer.name)}, external_id {external}"


def preview_sample(spec: JourneySpec, step: Step, templates_dir: Path) -> Preview:
    columns = entry_columns(spec.entry.event)
    event = {c: SAMPLE_EVENT.get(c) for c in columns}
    return _render(
        spec, step, templates_dir, SAMPLE_CUSTOMER, event, "sample data", {"name": "王小明"}
    )


def _render(
    spec: JourneySpec,
    step: Step,
    templates_dir: Path,
    customer: dict[str, Any],
    event: dict[str, Any],
    who: str,
    known: dict[str, str],
) -> Preview:
    context = {"customer": customer, "event": event, "journey": spec.journey, "step": step.id}
    rendered = render_message(templates_dir, step.template, context)
    body = mask_text(rendered.body, known) if rendered.body else None
    error = mask_text(rendered.error, known) if rendered.error else None
    return Preview(step, who, body, error, len(rendered.body or ""))
