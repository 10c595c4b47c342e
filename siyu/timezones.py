"""IANA time zone names, checked in one place: the journey validator, the importer and the
engine all ask here, so a name one of them accepts the others can use.

A customer's zone comes from a CRM or a CSV file: anything may be in it (`Mars/Olympus`, a
path, an empty string). `ZoneInfo` answers such names with different exceptions
(ZoneInfoNotFoundError, ValueError for paths, OSError for odd files); `zone` turns them all
into `UnknownTimeZone`.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

MAX_NAME = 64  # the longest IANA name is 32 characters; customers.timezone holds 64


class UnknownTimeZone(ValueError):
    """Not the name of an IANA time zone. The message never repeats the name itself: it may
    be a customer's personal data."""

    def __init__(self) -> None:
        super().__init__("not an IANA time zone name (e.g. Asia/Shanghai)")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The zone called `name`; UnknownTimeZone when there is none (cached: one per name)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or "\x00" in name:
        raise UnknownTimeZone()
    try:
        return ZoneInfo(name)
    except (LookupError, ValueError, OSError):  # not found / a path / unreadable file
        raise UnknownTimeZone() from None


def is_time_zone(name: object) -> bool:
    """True when `name` is a usable IANA time zone name."""
    try:
        zone(name)
    except (UnknownTimeZone, TypeError):
        return False
    return True
