"""The batch-sending skeleton every HTTP adapter shares.

An adapter says how to split a batch into API calls (``plan``), how to make one call
(``deliver``), and, for APIs without idempotency, how to look up whether a call whose answer was
lost was applied after all (``reconcile``). This class runs the bounded retries and turns the
final fault into receipts, so the outcome rules live in one place:

    RETRY / RATE (after inline retries)    -> outcome `retry` (+ retry_after)
    PERM                                   -> `failed`, the provider's code verbatim
    REFUSE                                 -> `refused`
    DONE                                   -> `sent`
    provider unreachable                   -> ChannelError (retryable) if nothing was sent
                                              yet in this batch, else the rest -> `retry`
    CONFIG (a wrong secret, a refused key)  -> ChannelError (not retryable, `auth` when the
                                              credentials were refused) if nothing was sent
                                              yet, else the rest of the batch -> `held`
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from siyu.channels.backoff import RetryPolicy, retrying
from siyu.channels.base import ChannelError, OutboundMessage, Outcome, Receipt
from siyu.channels.errors import Action, NotSentFault, ProviderFault
from siyu.channels.http_client import ProviderHttp
from siyu.channels.secrets import redact

log = logging.getLogger("siyu.channels")

Unit = list[OutboundMessage]  # the messages one API call carries


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


class _ChannelDown(Exception):
    def __init__(self, fault: ProviderFault, retryable: bool) -> None:
        super().__init__(fault.code)
        self.fault = fault
        self.retryable = retryable


class ReconcileFailed(ProviderFault):
    """We could not find out whether a lost request was applied: defer, never resend blindly."""

    def __init__(self, cause: ProviderFault) -> None:
        super().__init__(Action.RETRY, "unverified", f"status lookup failed: {cause}")


class BatchChannel:
    name: str
    identity_kind: str
    max_batch: int = 100
    # True when re-sending the same request can never deliver twice (client_msg_id, webhook-id,
    # enable_duplicate_check). False means: reconcile before any retry after an ambiguous fault.
    idempotent: bool = True

    def __init__(self, name: str, runtime: Runtime) -> None:
        self.name = name
        self.rt = runtime

    # --- to implement ---------------------------------------------------------------------------
    def plan(self, messages: Sequence[OutboundMessage]) -> list[Unit]:
        return [[m] for m in messages]

    def deliver(self, unit: Unit) -> list[Receipt]:
        raise NotImplementedError

    def reconcile(self, unit: Unit) -> list[Receipt] | None:
        """Receipts if the lost request was applied, None if it surely was not."""
        return None

    # --- shared ---------------------------------------------------------------------------------
    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        if len(messages) > self.max_batch:
            raise ValueError(f"{self.name}: batch of {len(messages)} > max_batch {self.max_batch}")
        if not messages:
            return []
        receipts: list[Receipt] = []
        units = self.plan(messages)
        for i, unit in enumerate(units):
            try:
                receipts.extend(self._run(unit))
            except _ChannelDown as down:
                detail = redact(str(down.fault))
                if i == 0:
                    raise ChannelError(
                        self.name,
                        detail,
                        retryable=down.retryable,
                        auth=down.fault.auth,
                        code=down.fault.code,
                    ) from None
                # Earlier units were sent: report them, defer the rest (never raise them away).
                log.warning("%s: channel down mid-batch, deferring the rest: %s", self.name, detail)
                rest = [m for unit in units[i:] for m in unit]
                if not down.retryable:
                    receipts.extend(held_receipts(rest, down.fault))
                    break
                receipts.extend(
                    Receipt(m.idempotency_key, "retry", code=down.fault.code, detail=detail)
                    for m in rest
                )
                break
        return receipts

    def _run(self, unit: Unit) -> list[Receipt]:
        reconcile = None if self.idempotent else (lambda: self._reconcile_or_fault(unit))
        try:
            return retrying(
                lambda: self.deliver(unit),
                self.rt.policy,
                reconcile=reconcile,
                sleep=self.rt.sleep,
                rng=self.rt.rng,
            )
        except ProviderFault as fault:
            return self.fault_receipts(unit, fault)

    def _reconcile_or_fault(self, unit: Unit) -> list[Receipt] | None:
        try:
            return self.reconcile(unit)
        except ProviderFault as fault:
            raise ReconcileFailed(fault) from None

    def fault_receipts(self, unit: Unit, fault: ProviderFault) -> list[Receipt]:
        detail = redact(fault.detail)[:300] or None
        if isinstance(fault, NotSentFault):
            raise _ChannelDown(fault, retryable=True)
        if fault.action in (Action.CONFIG, Action.REFRESH):  # REFRESH here: replay did not help
            raise _ChannelDown(fault, retryable=False)
        outcome: Outcome = {  # type: ignore[assignment]
            Action.RETRY: "retry",
            Action.RATE: "retry",
            Action.PERM: "failed",
            Action.REFUSE: "refused",
            Action.DONE: "sent",
        }[fault.action]
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
