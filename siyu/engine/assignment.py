"""Deterministic assignment of customers to holdout and variants: a hash of the customer and
the journey's name (not its version), so it is stable across ticks, reruns and versions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from siyu.language.spec import Variant


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(customer_id: int, journey: str, share: float) -> bool:
    return share > 0 and unit_hash("holdout", journey, customer_id) < share


def pick_variant(
    customer_id: int, journey: str, step_id: str, variants: Sequence[Variant]
) -> Variant:
    point = unit_hash("variant", journey, step_id, customer_id) * sum(v.weight for v in variants)
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant
    return variants[-1]
