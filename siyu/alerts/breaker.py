"""Per-channel circuit breakers over the send ledger.

    closed ──failure rate > threshold over the window──▶ open (sends held until retry_at)
    open ──retry_at reached──▶ half_open (`probe` messages go through)
    half_open ──probe failure rate ≤ threshold──▶ closed
    half_open ──probe failure rate > threshold──▶ open again (another cool-down)

`evaluate_breakers` runs once per tick (the tick's `breakers` phase) and is the only writer;
the send decision asks `channel_hold`, which reads the state once per (channel, tick) and
hands out the half-open probe places. Held messages are `deferred` with reason code
`circuit_open` (detail: the channel), never lost. Opening and closing emit Prefect events
(`siyu.channel.circuit.opened` / `.closed`) and are recorded as alert events.

A provider refusing the channel's credentials (a wrong secret, a revoked key) opens the
breaker at once, whatever the failure rate (`hold_channel`, called by the send step): the
alert event says why (`reason: channel_auth` and the provider's code). Another refused
setting (`config_refused`: a template code, a permission) is an alert event only.

A failure is a provider failure (failed, not a render error or a missed staff confirmation)
or a retry; an attempt is a failure or a sent/pending message, by `updated_at` in the window.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import ColumnElement, and_, bindparam, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from siyu.alerts.config import Breaker, load_alerts
from siyu.errors import SiyuError
from siyu.hooks import hooks
from siyu.storage.models import AlertEvent, ChannelBreaker, Delivery, DeliveryStatus, ReasonCode

log = logging.getLogger(__name__)


class EngineContext(Protocol):
    """What the breaker needs of the engine's context (siyu.engine.context.EngineContext)."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def templates_dir(self) -> Path: ...


PROBE_RECHECK = timedelta(minutes=1)


_settings: dict[Path, tuple[float, Breaker]] = {}


def breaker_settings(project_root: Path) -> Breaker:
    """alerts.yaml's `breaker:`, re-read when the file changes (asked once per batch)."""
    path = project_root / "alerts.yaml"
    stamp = path.stat().st_mtime if path.is_file() else 0.0
    cached = _settings.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        settings = load_alerts(path).breaker
    except SiyuError:  # a broken alerts.yaml must not stop sending; `siyu alerts check` says why
        log.warning("alerts.yaml is invalid; the channel breaker uses its defaults")
        settings = Breaker()
    _settings[path] = (stamp, settings)
    return settings


# Failures that are not the channel's: the template's, a staff member's, the data's.
NOT_THE_CHANNELS = (
    ReasonCode.RENDER_ERROR,
    ReasonCode.NOT_CONFIRMED,
    ReasonCode.BAD_CUSTOMER_DATA,
)


def _failed() -> ColumnElement[bool]:
    return or_(
        and_(
            Delivery.status == DeliveryStatus.FAILED,
            Delivery.reason_code.not_in(NOT_THE_CHANNELS),
        ),
        and_(Delivery.status == DeliveryStatus.DEFERRED, Delivery.reason_code == ReasonCode.RETRY),
    )


def failure_rates(
    session: Session, channels: list[str], since: datetime, until: datetime
) -> dict[str, tuple[int, int]]:
    """{channel: (attempts, failures)} of the ledger rows that changed in [since, until], for
    several channels in one grouped query (ix_deliveries_channel_updated: only the window's
    rows are read, however long the ledger). A channel without attempts is (0, 0)."""
    rates = dict.fromkeys(channels, (0, 0))
    if not channels:
        return rates
    failed = _failed()
    attempted = or_(Delivery.status.in_(("sent", "pending")), failed)
    for channel, attempts, failures in session.execute(
        select(Delivery.channel, func.count(), func.sum(case((failed, 1), else_=0)))
        .where(
            Delivery.channel.in_(channels),
            Delivery.updated_at >= since,
            Delivery.updated_at <= until,
            attempted,
        )
        .group_by(Delivery.channel)
    ):
        rates[channel] = (int(attempts), int(failures or 0))
    return rates


def failure_rate(
    session: Session, channel: str, since: datetime, until: datetime
) -> tuple[int, int]:
    """(attempts, failures) of `channel` whose ledger rows changed in [since, until]."""
    return failure_rates(session, [channel], since, until)[channel]


def evaluate_breakers(
    session: Session, channels: list[str], settings: Breaker, now: datetime
) -> dict[str, str]:
    """Move each channel's breaker along; returns channel → state. The breakers are read in
    one query and the closed ones' failure rates in another (the usual case: every breaker
    closed, two SELECTs per tick); deliveries are not changed in here, so reading the rates
    before stepping gives each breaker what it would have read in its turn."""
    _create_missing(session, channels, now)
    found = {
        breaker.channel: breaker
        for breaker in session.scalars(
            select(ChannelBreaker).where(ChannelBreaker.channel.in_(channels))
        )
    }
    closed = [c for c in channels if c not in found or found[c].state == "closed"]
    rates = failure_rates(session, closed, now - settings.window, now)
    states = {}
    for channel in channels:
        breaker = found[channel]
        _step(session, breaker, settings, now, rates.get(channel))
        states[channel] = breaker.state
    session.flush()
    return states


def _create_missing(session: Session, channels: list[str], now: datetime) -> None:
    """A closed breaker for each channel that has none yet. Two ticks (two journeys' flow
    runs) may do this at once on a fresh database: the one that comes second creates nothing,
    instead of failing its tick on the breaker's primary key."""
    if not channels:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    rows = [
        {"channel": c, "state": "closed", "failure_rate": 0, "attempts": 0, "updated_at": now}
        for c in channels
    ]
    session.execute(insert(ChannelBreaker).values(rows).on_conflict_do_nothing())


def _step(
    session: Session,
    breaker: ChannelBreaker,
    settings: Breaker,
    now: datetime,
    closed_rate: tuple[int, int] | None = None,
) -> None:
    if breaker.state == "closed":
        attempts, failures = (
            closed_rate
            if closed_rate is not None
            else failure_rate(session, breaker.channel, now - settings.window, now)
        )
        rate = failures / attempts if attempts else 0.0
        breaker.attempts, breaker.failure_rate = attempts, rate
        if attempts >= settings.min_attempts and rate > settings.failure_rate:
            breaker.state, breaker.opened_at = "open", now
            breaker.retry_at = now + settings.cool_down
            _announce(session, breaker, "opened", now)
    elif breaker.state == "open":
        if breaker.retry_at is not None and now >= breaker.retry_at:
            breaker.state, breaker.retry_at = "half_open", now  # probes counted from here
    elif breaker.state == "half_open" and breaker.retry_at is not None:
        attempts, failures = failure_rate(session, breaker.channel, breaker.retry_at, now)
        if attempts:
            rate = failures / attempts
            breaker.attempts, breaker.failure_rate = attempts, rate
            if rate > settings.failure_rate:
                breaker.state, breaker.retry_at = "open", now + settings.cool_down
                _announce(session, breaker, "reopened", now)
            else:
                breaker.state, breaker.retry_at, breaker.opened_at = "closed", None, None
                _announce(session, breaker, "closed", now)
    breaker.updated_at = now


def _announce(
    session: Session,
    breaker: ChannelBreaker,
    what: str,
    now: datetime,
    why: dict[str, str] | None = None,
) -> None:
    detail = {
        "channel": breaker.channel,
        "failure_rate": round(float(breaker.failure_rate or 0), 4),
        "attempts": breaker.attempts or 0,
        "retry_at": breaker.retry_at.isoformat() if breaker.retry_at else None,
        **(why or {}),
    }
    session.add(
        AlertEvent(
            rule=f"circuit:{breaker.channel}",
            kind=f"circuit_{what}",
            fired_at=now,
            action="hold sends" if what != "closed" else "resume sends",
            detail=detail,
        )
    )
    hooks.emit_event(f"siyu.channel.circuit.{what}", breaker.channel, now, detail)


@dataclass
class Gate:
    """One channel's breaker as one tick sees it."""

    state: str
    retry_at: datetime | None
    probes_left: int
    lock: threading.Lock

    def hold(self, now: datetime) -> datetime | None:
        if self.state == "closed":
            return None
        if self.state == "half_open":
            with self.lock:
                if self.probes_left > 0:
                    self.probes_left -= 1
                    return None
            return now + PROBE_RECHECK  # the next tick decides with the probes' outcome
        return self.retry_at or now + PROBE_RECHECK


_GATE = select(ChannelBreaker.state, ChannelBreaker.retry_at).where(
    ChannelBreaker.channel == bindparam("channel")
)
# Keyed by the sessionmaker itself (not its id, which a later one could reuse) and the tick.
_gates: dict[tuple[sessionmaker[Session], str, datetime], Gate] = {}
_gates_lock = threading.Lock()


def channel_hold(
    sessions: sessionmaker[Session], channel: str, now: datetime, probe: int = 10
) -> datetime | None:
    """Until when a send on `channel` is held by its breaker at this tick; None: send."""
    key = (sessions, channel, now)
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            with sessions() as session:  # two columns, not an ORM object: once per tick
                breaker = session.execute(_GATE, {"channel": channel}).first()
            gate = Gate(
                breaker.state if breaker else "closed",
                breaker.retry_at if breaker else None,
                probe,
                threading.Lock(),
            )
            if len(_gates) > 64:
                _gates.clear()
            _gates[key] = gate
    return gate.hold(now)


def hold_channel(
    ctx: EngineContext, session: Session, channel: str, code: str, now: datetime
) -> datetime:
    """The provider refused `channel`'s credentials (`code`: the provider's): open its
    breaker now, whatever the failure rate, with an alert event saying so (reason
    `channel_auth`), and hold the rest of this tick's sends on it. Returns when the breaker
    lets the next probe through (the held messages' next attempt)."""
    settings = breaker_settings(ctx.templates_dir.parent)
    breaker = session.get(ChannelBreaker, channel, with_for_update=True)
    if breaker is None:
        breaker = ChannelBreaker(
            channel=channel, state="closed", failure_rate=0, attempts=0, updated_at=now
        )
        session.add(breaker)
    if breaker.state != "open" or breaker.retry_at is None or breaker.retry_at <= now:
        what = "opened" if breaker.state == "closed" else "reopened"
        if breaker.state == "closed":
            breaker.opened_at = now
        breaker.state, breaker.retry_at, breaker.updated_at = "open", now + settings.cool_down, now
        _announce(session, breaker, what, now, {"reason": "channel_auth", "code": code})
    retry_at = breaker.retry_at
    assert retry_at is not None
    session.flush()
    with _gates_lock:  # the rest of this tick's batches on the channel wait too
        _gates[(ctx.sessions, channel, now)] = Gate("open", retry_at, 0, threading.Lock())
    return retry_at


def config_refused(session: Session, channel: str, code: str, now: datetime) -> None:
    """The provider refused a setting of `channel` other than its credentials (a template
    code, a permission, the balance): an alert event; the breaker stays as it is, since the
    setting may be one journey step's, and other steps on the channel may well work."""
    detail = {"channel": channel, "reason": "channel_config", "code": code}
    session.add(
        AlertEvent(
            rule=f"config:{channel}",
            kind="config_refused",
            fired_at=now,
            action="hold sends",
            detail=detail,
        )
    )


def circuit_hold(
    ctx: EngineContext, channel: str, now: datetime, probe: int | None = None
) -> datetime | None:
    """The send decision's question: until when the channel's breaker holds its messages,
    or None.
    `probe`: the half-open probe size when the caller has already read alerts.yaml (once per
    batch, instead of a file check per due row)."""
    if probe is None:
        probe = breaker_settings(ctx.templates_dir.parent).probe
    return channel_hold(ctx.sessions, channel, now, probe)


def breakers_phase(ctx: EngineContext, channels: list[str], now: datetime) -> Counter[str]:
    """The tick's `breakers` phase: move the breakers of the journey's channels along;
    counts the channels not closed, e.g. {"open:sms": 1}."""
    settings = breaker_settings(ctx.templates_dir.parent)
    with ctx.sessions() as session, session.begin():
        states = evaluate_breakers(session, sorted(set(channels)), settings, now)
    return Counter(f"{state}:{channel}" for channel, state in states.items() if state != "closed")
