"""One customer's bad data fails that customer's message, never the step.

Customer rows come from a CRM or a CSV file: a time zone `Mars/Olympus`, a birthday in the
year 20000, an event whose JSON properties do not parse. The per-row computations of the send
step raise `BadCustomerData(field)` for such a value; the step records the row as
`failed` with reason `bad_customer_data:<field>` and goes on with the rest of the batch. The
reason names the field, never the value (it is personal data).

A value that cannot even be read from the database (siyu/engine/step_facts.py) is found by reading
the batch again row by row; when every row of a batch of several fails that way, the cause
is the query or the engine, not one customer, and the step fails (it is retried) instead.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from siyu.timezones import UnknownTimeZone, zone


class BadCustomerData(Exception):
    """A value of one customer's data that the engine cannot use (the reason's detail is
    `field`)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"bad_customer_data:{field}")
        self.field = field[:255]


def customer_zone(name: str) -> ZoneInfo:
    """The zone a customer's times are computed in; BadCustomerData('timezone') when the
    name is not a time zone (the journey's own zone is checked by the validator)."""
    try:
        return zone(name)
    except UnknownTimeZone:
        raise BadCustomerData("timezone") from None
