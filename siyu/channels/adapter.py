"""The batch-sending skeleton every HTTP adapter shares.

An adapter says how to split a batch into API calls (``plan``), how to make one call
(``deliver``), and, for APIs without idempotency, how to look up whether a call whose answer was
lost was applied after all (``reconcile``). This class runs the bounded retries and turns the
final fault into receipts, so the outcome rules live in one place:

    RETRY / RATE (after inline retries)    -> outcome `retry` (+ retry_after)
    PERM                                   -> `failed`, the provider's code verbatim
    REFUSE                                 -> `refused`
    DONE                                   -> `sent`
    provider unreachable                   -> ChannelUnavailable if nothing was sent yet in
                                              this batch, else the rest -> `retry`
    CONFIG (a wrong secret, a refused key)  -> ChannelMisconfigured (`auth` when the
                                              credentials were refused) if nothing was sent
                                              yet, else the rest of the batch -> `held`
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from siyu.channels.backoff import RetryPolicy, retrying
from siyu.channels.base import (
    IN_DOUBT,
    NOT_FOUND,
    UNVERIFIED,
    ChannelMisconfigured,
    ChannelUnavailable,
    OutboundMessage,
    Outcome,
    Receipt,
)
from siyu.channels.errors import Action, NotSentFault, ProviderFault
from siyu.channels.http_client import ProviderHttp
from siyu.channels.secrets import redact

log = logging.getLogger("siyu.channels")

Unit = list[OutboundMessage]  # the messages one API call carries
# A call's fault as its messages' outcome (CONFIG and REFRESH stop the channel: channel_down).
_OUTCOMES: dict[Action, Outcome] = {
    Action.RETRY: "retry",
    Action.RATE: "retry",
    Action.PERM: "failed",
    Action.REFUSE: "refused",
    Action.DONE: "sent",
}


@dataclass
class Runtime:
    """What the registry hands every adapter."""

    http: ProviderHttp
    policy: RetryPolicy
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)


def held_receipts(messages: Sequence[OutboundMessage], fault: ProviderFault) -> list[Receipt]:
    """`held` receipts: the channel's configuration refused the call, not these messages."""
    detail = redact(fault.detail)[:300] or None
    return [
        Receipt(m.idempotency_key, "held", code=fault.code, detail=detail, auth=fault.auth)
        for m in messages
    ]


def channel_down(
    channel: str, fault: ProviderFault
) -> ChannelUnavailable | ChannelMisconfigured | None:
    """The error that stops the whole channel when `fault` says the channel cannot be used
    (unreachable; configuration or credentials refused); None for a fault of this call only."""
    detail = redact(str(fault))
    if isinstance(fault, NotSentFault):
        return ChannelUnavailable(channel, detail, code=fault.code)
    if fault.action in (Action.CONFIG, Action.REFRESH):  # REFRESH here: replay did not help
        return ChannelMisconfigured(channel, detail, auth=fault.auth, code=fault.code)
    return None


class ReconcileFailed(ProviderFault):
    """We could not find out whether a lost request was applied: defer, never resend blindly."""

    def __init__(self, cause: ProviderFault) -> None:
        super().__init__(Action.RETRY, UNVERIFIED, f"status lookup failed: {cause}")


class BatchChannel:
    name: str
    identity_kind: str
    max_batch: int = 100
    # True when re-sending the same request can never deliver twice (client_msg_id, webhook-id,
    # enable_duplicate_check). False means: reconcile before any retry after an ambiguous fault.
    idempotent: bool = True
    # True when `reconcile(unit, since)` can tell, from the provider's own records, whether a
    # message an earlier (crashed) attempt may have sent went out: such messages are then
    # looked up before they are sent again. A non-idempotent channel without it re-sends them
    # (docs/channels.md, "Known weak spots").
    looks_up_earlier_attempts: bool = False

    @property
    def holds_what_it_cannot_check(self) -> bool:
        """Neither deduplicating nor able to look up: a message that may have been sent is
        never sent again blind, but answered `unknown` for a person to decide."""
        return not self.idempotent and not self.looks_up_earlier_attempts

    def __init__(self, name: str, runtime: Runtime) -> None:
        self.name = name
        self.rt = runtime

    # --- to implement ---------------------------------------------------------------------------
    def plan(self, messages: Sequence[OutboundMessage]) -> list[Unit]:
        return [[m] for m in messages]

    def deliver(self, unit: Unit) -> list[Receipt]:
        raise NotImplementedError

    def reconcile(self, unit: Unit, since: float | None = None) -> list[Receipt] | None:
        """Receipts if the lost request was applied, None if it surely was not. `since`: the
        earliest moment (epoch seconds) it can have been made; without it, this call's own
        first attempt. A receipt `retry` with code `not_found_after_timeout` marks a message
        of the unit that was not applied when others were."""
        return None

    # --- shared ---------------------------------------------------------------------------------
    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        if len(messages) > self.max_batch:
            raise ValueError(f"{self.name}: batch of {len(messages)} > max_batch {self.max_batch}")
        if not messages:
            return []
        receipts: list[Receipt] = []
        if self.holds_what_it_cannot_check and any(m.in_doubt_since for m in messages):
            in_doubt = [m for m in messages if m.in_doubt_since is not None]
            receipts.extend(self.unknown_receipts(in_doubt, "an earlier attempt died mid-call"))
            messages = [m for m in messages if m.in_doubt_since is None]
            if not messages:
                return receipts
        if self.looks_up_earlier_attempts and any(m.in_doubt_since for m in messages):
            settled, messages = self._settle_in_doubt(messages)
            receipts.extend(settled)
            if not messages:
                return receipts
        units = self.plan(messages)
        for i, unit in enumerate(units):
            result = self._run(unit)
            if isinstance(result, list):
                receipts.extend(result)
                continue
            fault, down = result
            if i == 0:
                raise down
            # Earlier units were sent: report them, defer the rest (never raise them away).
            detail = redact(str(fault))
            log.warning("%s: channel down mid-batch, deferring the rest: %s", self.name, detail)
            rest = [m for unit in units[i:] for m in unit]
            if isinstance(down, ChannelMisconfigured):
                receipts.extend(held_receipts(rest, fault))
                break
            receipts.extend(
                Receipt(m.idempotency_key, "retry", code=fault.code, detail=detail) for m in rest
            )
            break
        return receipts

    def _settle_in_doubt(
        self, messages: Sequence[OutboundMessage]
    ) -> tuple[list[Receipt], list[OutboundMessage]]:
        """Messages an earlier attempt may have sent (its process died between the provider's
        answer and the ledger): looked up at the provider first. Found: its record is the
        receipt. Surely not sent: sent now, with the rest. Lookup failed: deferred, never sent
        blind. Returns (receipts, the messages to send)."""
        receipts: list[Receipt] = []
        to_send = [m for m in messages if m.in_doubt_since is None]
        in_doubt = [m for m in messages if m.in_doubt_since is not None]
        not_sent_before = 0
        for unit in self.plan(in_doubt):
            since = min(m.in_doubt_since for m in unit if m.in_doubt_since).timestamp()
            try:
                found = retrying(
                    partial(self.reconcile, unit, since),
                    self.rt.policy,
                    sleep=self.rt.sleep,
                    rng=self.rt.rng,
                )
            except ProviderFault as fault:
                if fault.action in (Action.CONFIG, Action.REFRESH):
                    receipts.extend(held_receipts(unit, fault))
                    continue
                detail = f"could not look up an earlier attempt: {redact(str(fault))}"[:300]
                receipts.extend(
                    Receipt(m.idempotency_key, "retry", code=UNVERIFIED, detail=detail)
                    for m in unit
                )
                continue
            by_key = {r.idempotency_key: r for r in found or []}
            for m in unit:
                receipt = by_key.get(m.idempotency_key)
                if receipt is None or receipt.code == NOT_FOUND:
                    to_send.append(m)  # the provider has no record of it: not sent before
                    not_sent_before += 1
                else:
                    receipts.append(receipt)
        log.info(
            "%s: %d message(s) in doubt after an earlier attempt: %d not sent before, sent now",
            self.name,
            len(in_doubt),
            not_sent_before,
        )
        return receipts, to_send

    def _run(
        self, unit: Unit
    ) -> list[Receipt] | tuple[ProviderFault, ChannelUnavailable | ChannelMisconfigured]:
        """The unit's receipts; or, when its fault makes the whole channel unusable (nothing
        of the unit was sent), that fault and the channel's error."""
        reconcile: Callable[[], list[Receipt] | None] | None = None
        if self.holds_what_it_cannot_check:
            reconcile = partial(self.unknown_receipts, unit, "the answer to the call was lost")
        elif not self.idempotent:
            reconcile = partial(self._reconcile_or_fault, unit)
        try:
            return retrying(
                lambda: self.deliver(unit),
                self.rt.policy,
                reconcile=reconcile,
                sleep=self.rt.sleep,
                rng=self.rt.rng,
            )
        except ProviderFault as fault:
            down = channel_down(self.name, fault)
            return self.fault_receipts(unit, fault) if down is None else (fault, down)

    def _reconcile_or_fault(self, unit: Unit) -> list[Receipt] | None:
        try:
            return self.reconcile(unit)
        except ProviderFault as fault:
            raise ReconcileFailed(fault) from None

    def unknown_receipts(self, unit: Sequence[OutboundMessage], what: str) -> list[Receipt]:
        """`unknown` receipts: `what` happened after the request may have reached the provider,
        which can neither deduplicate nor be asked; a person decides (`siyu resolve`)."""
        detail = (
            f"{what}; {self.name} can neither deduplicate nor look up a message: check whether "
            "it arrived, then `siyu resolve`"
        )
        return [Receipt(m.idempotency_key, "unknown", code=IN_DOUBT, detail=detail) for m in unit]

    def fault_receipts(self, unit: Unit, fault: ProviderFault) -> list[Receipt]:
        """The unit's receipts for a fault of this call only (not one of channel_down's)."""
        detail = redact(fault.detail)[:300] or None
        outcome = _OUTCOMES[fault.action]
        retry_after = fault.retry_after if outcome == "retry" else None
        return [
            Receipt(
                m.idempotency_key,
                outcome,
                code=fault.code,
                detail=detail,
                retry_after=retry_after,
            )
            for m in unit
        ]

    def close(self) -> None:
        self.rt.http.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.rt.http.base_url!r})"


def group_by(
    messages: Sequence[OutboundMessage], key: Callable[[OutboundMessage], object], size: int
) -> list[Unit]:
    """Split ``messages`` into units of identical ``key`` and at most ``size`` each, keeping
    first-seen order (so a batch's receipts come back roughly in input order)."""
    groups: dict[object, Unit] = {}
    for m in messages:
        groups.setdefault(key(m), []).append(m)
    units: list[Unit] = []
    for g in groups.values():
        units.extend(g[i : i + size] for i in range(0, len(g), size))
    return units
