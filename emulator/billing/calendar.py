"""Stripe's billing calendar: period boundaries from the billing cycle anchor, and the
timings of the renewal work (draft invoice, finalization, invoice.upcoming, incomplete expiry).

Months and years follow the anchor's day of the month (Stripe: a subscription anchored on
the 31st bills on the last day of shorter months, then on the 31st again; one anchored on
Feb 29 bills on Feb 28 in common years), keeping the anchor's time of day. Days and weeks are
fixed lengths. Each boundary is computed from the anchor, never from the previous boundary,
so a short month doesn't drag the following ones.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

DAY = 86_400
HOUR = 3_600
INTERVALS = ("day", "week", "month", "year")
# A renewal invoice stays a draft for about an hour after it is created, then Stripe
# finalizes it and attempts payment.
RENEWAL_DRAFT_SECONDS = HOUR
# An `incomplete` subscription whose first invoice isn't paid within 23 hours expires.
INCOMPLETE_EXPIRES_SECONDS = 23 * HOUR
# The Dashboard's "upcoming renewal events" setting (days before renewal that invoice.upcoming
# is sent); the emulator's /_emulator/billing/config changes it.
DEFAULT_UPCOMING_DAYS = 7


def boundary(anchor: int, interval: str, count: int, n: int) -> int:
    """The n-th period boundary after `anchor` (n=0 is the anchor itself)."""
    if interval == "day":
        return anchor + n * count * DAY
    if interval == "week":
        return anchor + n * count * 7 * DAY
    start = datetime.fromtimestamp(anchor, UTC)
    months = n * count * (12 if interval == "year" else 1)
    year, month0 = divmod(start.month - 1 + months, 12)
    year += start.year
    day = min(start.day, calendar.monthrange(year, month0 + 1)[1])
    return int(start.replace(year=year, month=month0 + 1, day=day).timestamp())


def _approx_seconds(interval: str, count: int) -> int:
    return count * {"day": DAY, "week": 7 * DAY, "month": 28 * DAY, "year": 365 * DAY}[interval]


def next_boundary(anchor: int, interval: str, count: int, after: int) -> int:
    """The first period boundary strictly after `after`."""
    n = max(1, (after - anchor) // _approx_seconds(interval, count) - 1)
    while boundary(anchor, interval, count, n) <= after:
        n += 1
    while n > 1 and boundary(anchor, interval, count, n - 1) > after:
        n -= 1
    return boundary(anchor, interval, count, n)


def period_end(price: dict[str, object], anchor: int, start: int) -> int:
    """The end of the period that starts at `start` for a subscription item on `price`."""
    recurring = price.get("recurring")
    if not isinstance(recurring, dict):
        raise ValueError("a subscription item needs a recurring price")
    return next_boundary(anchor, str(recurring["interval"]), int(recurring.get("interval_count") or 1), start)
