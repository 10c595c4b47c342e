"""SQLAlchemy models: the brand's customer data and the journey engine's state.

Brand data (what a CRM export holds): customers, channel_identities, orders, events,
consents, suppressions, and consent_changes (their history).
Engine state: journeys (name + version), enrollments (one customer inside one journey),
deliveries (the send ledger: one row per enrollment and step, written before the channel
call; the source of truth for "did customer X get message Y, and why not"), provider_tokens
(access tokens every process shares).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    case,
    cast,
    func,
    literal,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from siyu.storage.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- brand data -------------------------------------------------------------------------


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The customer's id in the brand's CRM: what imports match on, so a re-import updates.
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    gender: Mapped[str | None] = mapped_column(String(8))
    city: Mapped[str | None] = mapped_column(String(32))
    member_level: Mapped[str | None] = mapped_column(String(16))
    birthday: Mapped[date | None] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The identity kinds a channel adapter can address (siyu.channels.base.Channel.identity_kind).
IDENTITY_KINDS = (
    "mobile",
    "email",
    "wecom_external_userid",
    "wechat_openid",
    "miniprogram_openid",
)


class ChannelIdentity(Base):
    """How a customer is reached on one channel: a mobile number, a WeCom external_userid..."""

    __tablename__ = "channel_identities"
    __table_args__ = (
        UniqueConstraint("kind", "value"),
        Index("ix_channel_identities_customer_kind", "customer_id", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(128))


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_customer_paid", "customer_id", "paid_at"),
        # Every tick re-reads the entry window's orders (late events): with order_seq and
        # customer_id in the index, a `where:` on order_seq is answered without the rows.
        Index("ix_orders_paid_seq_customer", "paid_at", "order_seq", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    category: Mapped[str] = mapped_column(String(32))
    order_seq: Mapped[int] = mapped_column(Integer)  # 1 = the customer's first paid order
    store: Mapped[str | None] = mapped_column(String(64))


class Event(Base):
    """Behavioural events other than orders (browse, group_joined, coupon_claimed...)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_name_occurred", "name", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)  # source system's
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Subscription(Base):
    """A membership or subscription with a renewal date (renewal-reminder journeys)."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    plan: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renews_at: Mapped[datetime] = mapped_column(UTCDateTime)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)


class Consent(Base):
    """Per-purpose consent (marketing, personalisation). No row means no consent."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("customer_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Suppression(Base):
    """A customer who must not be contacted on a channel again (opt-out, refusal, blocked).
    Channel `*` suppresses every channel."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("customer_id", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsentChange(Base):
    """One change of a consent or a suppression at its moment, as the data records it:
    append-only, written in the transaction that changes the row (siyu/storage/
    consent_changes.py). A backtest turns consents and suppressions back to each simulated
    moment with it (siyu/simulate/consent_replay.py).

    States: a consent is `granted`, `denied` or `absent` (no row); a suppression is
    `suppressed` or `absent`. `previous` held from `previous_since` (NULL: for as long as the
    database has known the customer) until `at`."""

    __tablename__ = "consent_changes"
    __table_args__ = (Index("ix_consent_changes_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # consent | suppression
    name: Mapped[str] = mapped_column(String(32))  # the consent's purpose, the channel (or *)
    previous: Mapped[str] = mapped_column(String(16))
    previous_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str | None] = mapped_column(String(128))


# --- engine state -----------------------------------------------------------------------


class Journey(Base):
    """One version of a journey (the file's `version:`). Editing a file without raising its
    version updates that version's stored spec in place."""

    __tablename__ = "journeys"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    spec_hash: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # First tick's `now`: entries older than this (minus the entry lookback) are not enrolled,
    # so turning a journey on does not message every customer who ever bought.
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Calendar journeys: the last cron firing whose audience was enrolled.
    last_calendar_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The latest `now` whose entry / exit / goal events were scanned: the next tick scans from
    # there minus the late-event window (EngineContext.late_events), not from activation, so
    # ticks do not slow down as a journey ages.
    enrolled_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exits_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    goals_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


ENROLLMENT_STATUSES = ("active", "exited", "completed")


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("journey_name", "customer_id", "entry_key"),
        Index("ix_enrollments_journey_status_entered", "journey_name", "status", "entered_at"),
        # Every step and the `complete` phase read one version's active enrollments each tick:
        # with journey_id in the index they are found (and ruled out) without reading rows.
        Index(
            "ix_enrollments_journey_status_version",
            "journey_name",
            "status",
            "journey_id",
            "entered_at",
        ),
        # The goals phase looks at the enrollments of the goal window still without a goal:
        # found by this range (customer_id included for the join), not by scanning the
        # journey's whole enrollment history (siyu/engine/goals.py record_goals).
        Index(
            "ix_enrollments_journey_goal_entered",
            "journey_name",
            "goal_reached_at",
            "entered_at",
            "customer_id",
        ),
        Index("ix_enrollments_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id"))
    journey_name: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    entry_key: Mapped[str] = mapped_column(String(64))  # the entry event's key, e.g. order:42
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the entry event's time
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the tick that enrolled it
    status: Mapped[str] = mapped_column(String(16), default="active")
    exited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_reason: Mapped[str | None] = mapped_column(String(64))
    goal_reached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # In the journey's holdout: enrolled and measured, never sent anything.
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)


class DeliveryStatus(StrEnum):
    """A ledger row's status. `sending` is written before the channel call; a row left in
    `sending` by a crash is sent again with the same idempotency key."""

    SENDING = "sending"
    PENDING = "pending"  # handed to the channel, awaiting a staff member's confirmation
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"


DELIVERY_STATUSES = tuple(DeliveryStatus)
TERMINAL_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)


class ReasonCode(StrEnum):
    """Why a ledger row has its status (deliveries.reason_code); the free-text part (a
    consent purpose, a provider's code, a template's error) is deliveries.reason_detail."""

    EXITED = "exited"
    HOLDOUT = "holdout"
    NO_DATE = "no_date"  # detail: the anchor's date column
    EXPIRED = "expired"
    CONDITION_FALSE = "condition_false"
    NO_CONSENT = "no_consent"  # detail: the purpose
    SUPPRESSED = "suppressed"
    NO_ADDRESS = "no_address"  # detail: the identity kind
    CIRCUIT_OPEN = "circuit_open"  # detail: the channel
    QUIET_HOURS = "quiet_hours"
    FATIGUE = "fatigue"
    CAP = "cap"  # detail: the cap's name
    BAD_CUSTOMER_DATA = "bad_customer_data"  # detail: the field, never the value
    RENDER_ERROR = "render_error"  # detail: template:line: error, values masked
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    NOT_CONFIRMED = "not_confirmed"
    RETRY = "retry"  # detail: the provider's code
    REFUSED = "refused"  # detail: the provider's code
    CHANNEL_AUTH = "channel_auth"  # detail: the provider's code
    CHANNEL_CONFIG = "channel_config"  # detail: the provider's code
    PROVIDER_FAILED = "provider_failed"  # detail: "<provider code>[ after retries]: <text>"
    # An earlier attempt may have sent it and the provider can neither deduplicate nor be
    # asked: held (deferred, no next attempt) until a person decides (`siyu resolve`).
    IN_DOUBT = "in_doubt"  # detail: what happened
    OTHER = "other"  # a reason written before reason codes whose code was not known


# Reasons shown to people as "code: detail" rather than "code:detail" (free text follows).
_SPACED = (ReasonCode.RENDER_ERROR, ReasonCode.NOT_CONFIRMED)
# Reasons whose detail is the whole text shown (it starts with the provider's own code).
_DETAIL_ONLY = (ReasonCode.PROVIDER_FAILED, ReasonCode.OTHER)


def reason_text(code: ReasonCode | str | None, detail: str | None) -> str | None:
    """The reason as one line for people and reports (`no_consent:marketing`,
    `render_error: day3.j2:2: ...`): the one place a code and its detail are joined."""
    if code is None:
        return None
    if code in _DETAIL_ONLY:
        return detail or str(code)
    if detail is None:
        return str(code)
    return f"{code}: {detail}" if code in _SPACED else f"{code}:{detail}"


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
        # The circuit breakers read one channel's rows changed in the last window, every
        # tick: without this they scanned the whole ledger (siyu/alerts/breaker.py).
        Index("ix_deliveries_channel_updated", "channel", "updated_at"),
        # Caps and fatigue read each batch's customers' rows (siyu/engine/pressure.py): without
        # it, every batch scanned the whole ledger (migration 0011).
        Index("ix_deliveries_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    journey_name: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(16), default="marketing")
    variant: Mapped[str | None] = mapped_column(String(32))
    # Stored as the value's string, with a CHECK listing the allowed values.
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(
            DeliveryStatus,
            name="status",
            length=16,
            native_enum=False,
            create_constraint=True,
            validate_strings=True,
            values_callable=_values,
        )
    )
    reason_code: Mapped[ReasonCode | None] = mapped_column(
        Enum(
            ReasonCode,
            name="reason_code",
            length=32,
            native_enum=False,
            create_constraint=True,
            validate_strings=True,
            values_callable=_values,
        )
    )
    reason_detail: Mapped[str | None] = mapped_column(String(255))
    provider_code: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @hybrid_property
    def reason(self) -> str | None:
        """The reason as one line (reason_text), for people: read-only."""
        return reason_text(self.reason_code, self.reason_detail)

    @reason.inplace.expression
    @classmethod
    def _reason_expression(cls) -> ColumnElement[str | None]:
        """The same line in SQL, to select or group by (mirrors reason_text)."""
        code = cast(cls.reason_code, String)
        return case(
            (cls.reason_code.in_(_DETAIL_ONLY), func.coalesce(cls.reason_detail, code)),
            (cls.reason_detail.is_(None), code),
            (cls.reason_code.in_(_SPACED), code + literal(": ") + cls.reason_detail),
            else_=code + literal(":") + cls.reason_detail,
        )


# --- measure and react (segments, circuit breakers, alerts, the data timetable) -----------


class SegmentMembership(Base):
    """One stay of a customer in a segment (an RFM tier, a lifecycle stage, an activity tag).
    `left_at` is NULL while the customer is inside; a new stay is a new row, so "customers
    entering a segment" are the rows whose `entered_at` is recent."""

    __tablename__ = "segment_memberships"
    __table_args__ = (
        Index("ix_segment_memberships_segment_left", "segment", "left_at"),
        Index("ix_segment_memberships_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    segment: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(16))  # rfm | lifecycle | activity
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChannelBreaker(Base):
    """A channel's circuit breaker: closed (sending), open (held until `retry_at`), half_open
    (a few probe messages decide whether it closes)."""

    __tablename__ = "channel_breakers"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="closed")
    failure_rate: Mapped[float] = mapped_column(Numeric(6, 4), default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MetricObservation(Base):
    """One day's value of an alert rule's metric, and whether it breached the threshold
    ("three days running" is read from these rows)."""

    __tablename__ = "metric_observations"
    __table_args__ = (UniqueConstraint("rule", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    value: Mapped[float] = mapped_column(Numeric(8, 4))
    breached: Mapped[bool] = mapped_column(Boolean)


class AlertEvent(Base):
    """An alert that fired (a breaker opening or closing, a metric rule) and what was done."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_rule_fired", "rule", "fired_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # breaker_opened, metric_breached...
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class FollowUpTask(Base):
    """A manual follow-up for staff (e.g. WeCom messages left unread): one open task per
    rule and customer at a time."""

    __tablename__ = "follow_up_tasks"
    __table_args__ = (Index("ix_follow_up_tasks_rule_status", "rule", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PipelineRun(Base):
    """One stage of the daily data timetable (sync 17:00 → clean 02:00 → journeys 08:00) for
    one data day; a stage starts only when the previous stage of its day succeeded."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (UniqueConstraint("stage", "data_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))  # sync | clean | journeys
    data_day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProviderToken(Base):
    """A provider's access token (WeCom gettoken, WeChat stable_token) shared by every process
    on this database, so the fleet fetches one per app instead of one per process
    (siyu/channels/token_store.py). `key` is the provider, the app id and a SHA-256 of the
    base URL and secret: never the secret itself."""

    __tablename__ = "provider_tokens"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    token: Mapped[str] = mapped_column(String(512))  # both providers: reserve 512 characters
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # as the provider said, UTC
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when it was fetched
    fetches: Mapped[int] = mapped_column(Integer, default=0)  # provider calls, fleet-wide


class RateBucket(Base):
    """A channel's rate limit (channels.yaml `rate_limit`) as one token bucket shared by every
    partition, process, deployment and machine on this database (siyu/channels/rate_store.py):
    the tokens left and when they were last counted (the booking process's clock, Unix
    seconds). A negative balance is the queue of calls booked ahead of time."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)  # the channel and its URL
    tokens: Mapped[float] = mapped_column(Float)
    counted_at: Mapped[float] = mapped_column(Float)


# Reasons counted by their code alone: their detail is free text (a template's error, a
# provider's code) that would split one cause into many lines.
_BY_CODE = (ReasonCode.RENDER_ERROR, ReasonCode.RETRY)


def reason_group(code: ReasonCode | None, detail: str | None) -> str:
    """The line a reason is counted under: 'render_error' for every render error, else the
    reason itself ('no_consent:marketing')."""
    if code in _BY_CODE:
        return str(code)
    return reason_text(code, detail) or "unknown"
