"""The one small interface every channel adapter implements.

The engine owns policy (the ledger, consent, caps, quiet hours, when to try again); an
adapter only moves a batch of already-rendered messages to its provider and reports, per
message, what the provider said. Think of httpx's transports: `send_batch` is
`handle_request`.

Outcomes an adapter may report, and what the engine does with each:

    sent      the provider accepted the message            -> ledger `sent`
    pending   accepted, but a human or a later callback
              decides (WeCom add_msg_template)             -> ledger `pending`
    retry     transient (5xx, timeout, busy, throttled)
              after the adapter's own bounded retries      -> ledger `deferred`, tried again
    failed    permanent for this message (bad id, payload,
              config)                                      -> ledger `failed` with the code
    refused   the customer refused / unsubscribed          -> ledger `skipped` + a suppression
    held      the channel's configuration refused the call
              (a wrong secret or key, a missing
              permission): not this message's fault      -> ledger `deferred`
              (`channel_auth:<code>` / `channel_config:<code>`), the attempt not counted, the
              channel's breaker opened; sent once an operator fixes the configuration
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

Outcome = Literal["sent", "pending", "retry", "failed", "refused", "held", "unknown"]

# The code of a `retry` receipt for a message that may have gone out: its answer was lost and
# looking it up at the provider failed too. The engine keeps the doubt: the next attempt looks
# it up again before sending (OutboundMessage.in_doubt_since).
UNVERIFIED = "unverified"
# The code of a `retry` receipt from a lookup: the provider has no record of this message, so
# it can be sent (reconcile marks the messages of a unit that did not go out when others did).
NOT_FOUND = "not_found_after_timeout"
# The code of an `unknown` receipt: the message may have gone out, and the channel can neither
# deduplicate nor look it up (BatchChannel.holds_what_it_cannot_check).
IN_DOUBT = "in_doubt"


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one customer, ready for a provider."""

    idempotency_key: str  # stable across retries and reruns; derived from the ledger row
    customer_id: int
    address: str  # the channel's recipient id: external_userid, openid, mobile, e-mail, ...
    body: str  # the rendered template
    params: dict[str, Any] = field(default_factory=dict)  # step-level extras (template code, ...)
    # Set when an earlier attempt claimed this message (at this moment, the tick's clock) and
    # never recorded an answer: it may have gone out. A channel whose provider does not
    # deduplicate looks it up before sending it again (BatchChannel.send_batch).
    in_doubt_since: datetime | None = None


@dataclass(frozen=True)
class Receipt:
    """What the provider said about one message."""

    idempotency_key: str
    outcome: Outcome
    provider_message_id: str | None = None
    code: str | None = None  # the provider's own error code, kept verbatim
    detail: str | None = None  # short human-readable reason, never containing secrets
    retry_after: float | None = None  # seconds, when the provider said so
    auth: bool = False  # `held` only: the credentials (secret, key, signature) were refused


@runtime_checkable
class Channel(Protocol):
    """A channel adapter. Implementations must be safe to call with any batch size up to
    `max_batch` and must return exactly one receipt per message, in any order."""

    name: str  # the name journeys use in `send:` (wecom, sms, ...)
    # which channel identity of a customer it addresses (see siyu.storage.models)
    identity_kind: str
    max_batch: int

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]: ...

    def close(self) -> None: ...


class ChannelError(Exception):
    """The root of every error of siyu.channels; each subclass says what the engine does:

        ChannelError                  the channel as a whole cannot be used right now
        ├── ChannelUnavailable        transient (unreachable, busy): the batch is retried later
        ├── ChannelMisconfigured      config or credentials refused: the batch is held
        └── ProviderFault (errors.py) one provider call failed, inside an adapter, which turns
                                      it into receipts by its Action: retry later, fail (or
                                      refuse) that message, hold, or reconcile when ambiguous

    `send_batch` raises a ChannelUnavailable or a ChannelMisconfigured (or a plain ChannelError
    saying `retryable`) instead of returning receipts, and the engine defers the whole batch:
    `retryable` as a counted retry; otherwise (`auth` when the credentials were refused) held
    without counting, until the configuration is fixed. A ProviderFault never leaves an
    adapter. `code` is the provider's code, verbatim, when there is one.
    """

    def __init__(
        self,
        channel: str | None,
        message: str,
        *,
        retryable: bool = True,
        auth: bool = False,
        code: str | None = None,
    ) -> None:
        super().__init__(f"channel {channel!r}: {message}" if channel is not None else message)
        self.channel = channel  # None for a ProviderFault: its adapter knows the channel
        self.retryable = retryable
        self.auth = auth
        self.code = code


class ChannelUnavailable(ChannelError):
    """Transient: the provider is unreachable or busy and nothing of the batch was sent. The
    engine retries the batch later, counting the attempt."""

    def __init__(self, channel: str, message: str, *, code: str | None = None) -> None:
        super().__init__(channel, message, retryable=True, code=code)


class ChannelMisconfigured(ChannelError):
    """The provider refused the channel's configuration (a template, a permission) or, with
    `auth`, its credentials. The engine holds the batch, without counting an attempt, until an
    operator fixes it."""

    def __init__(
        self, channel: str, message: str, *, auth: bool = False, code: str | None = None
    ) -> None:
        super().__init__(channel, message, retryable=False, auth=auth, code=code)


@dataclass(frozen=True)
class PendingMessage:
    """A message a provider accepted as `pending`, to be checked again later."""

    idempotency_key: str
    customer_id: int
    address: str
    provider_message_id: str


@runtime_checkable
class PollingChannel(Channel, Protocol):
    """A channel whose sends are confirmed later (WeCom mass messages need a staff member to
    confirm them in the WeCom client). The engine calls `check_pending` on every tick for the
    deliveries still `pending`; a receipt whose outcome is still `pending` leaves the row as is."""

    def check_pending(self, messages: Sequence[PendingMessage]) -> list[Receipt]: ...
