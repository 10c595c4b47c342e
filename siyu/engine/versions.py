"""The rows of a journey's versions: the stored spec and its hash, the version row of the
file's `version:` (with the `migrate:` policy), and the older versions still kept."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.language.spec import JourneySpec
from siyu.storage.models import Delivery, Enrollment, Journey


def spec_hash(spec: JourneySpec) -> str:
    canonical = json.dumps(stored_spec(spec), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_spec(spec: JourneySpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True)


def lock_journey(session: Session, journey: str) -> None:
    """Serialise enrollment of one journey across workers until the transaction ends, so two
    ticks at once neither create its version row twice nor enroll a customer twice under
    different entry events. SQLite already serialises writers
    (siyu.storage.engine.write_session)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"siyu-enroll:{journey}"))))


def ensure_journey(session: Session, spec: JourneySpec, now: datetime) -> Journey:
    """The row of the file's `version:`. Editing a file without raising its version updates
    that version in place; a new version applies the file's `migrate:` policy to customers
    inside older versions. The first tick ever sets `activated_at`, kept by later versions."""
    rows = session.scalars(
        select(Journey).where(Journey.name == spec.journey).order_by(Journey.version)
    ).all()
    current = next((row for row in rows if row.version == spec.version), None)
    if current is not None:
        digest = spec_hash(spec)
        if current.spec_hash != digest:
            current.spec_hash, current.spec = digest, stored_spec(spec)
            session.flush()
        return current
    latest = rows[-1] if rows else None
    if latest is not None and latest.version > spec.version:
        raise ConfigError(
            f"journey '{spec.journey}' already ran as version {latest.version}; "
            f"the file says version {spec.version}. Raise `version:` instead of "
            "lowering it."
        )
    journey = Journey(
        name=spec.journey,
        version=spec.version,
        spec_hash=spec_hash(spec),
        spec=stored_spec(spec),
        activated_at=rows[0].activated_at if rows else now,
        created_at=now,
    )
    session.add(journey)
    session.flush()
    if latest is not None and spec.migrate.policy == "move":
        _move_enrollments(session, spec, journey)
    return journey


def _move_enrollments(session: Session, spec: JourneySpec, journey: Journey) -> None:
    """Put the customers inside older versions onto this one; their ledger rows of renamed
    steps count as the new steps (so nothing already sent is sent again)."""
    moved = select(Enrollment.id).where(
        Enrollment.journey_name == spec.journey,
        Enrollment.status == "active",
        Enrollment.journey_id != journey.id,
    )
    for old, new in spec.migrate.steps.items():
        clash = select(Delivery.enrollment_id).where(
            Delivery.step_id == new, Delivery.journey_name == spec.journey
        )
        session.execute(
            update(Delivery)
            .where(
                Delivery.journey_name == spec.journey,
                Delivery.step_id == old,
                Delivery.enrollment_id.in_(moved),
                Delivery.enrollment_id.not_in(clash),
            )
            .values(step_id=new)
        )
    session.execute(
        update(Enrollment).where(Enrollment.id.in_(moved)).values(journey_id=journey.id)
    )


def spec_of(journey: Journey) -> JourneySpec:
    return JourneySpec.model_validate(journey.spec)


def kept_versions(session: Session, spec: JourneySpec) -> list[tuple[int, JourneySpec]]:
    """Older versions that still have customers inside (the `keep` policy): (id, spec)."""
    active = (
        select(Enrollment.journey_id)
        .where(Enrollment.journey_name == spec.journey, Enrollment.status == "active")
        .distinct()
    )
    rows = session.scalars(
        select(Journey)
        .where(
            Journey.name == spec.journey, Journey.version != spec.version, Journey.id.in_(active)
        )
        .order_by(Journey.version)
    )
    return [(row.id, spec_of(row)) for row in rows]
