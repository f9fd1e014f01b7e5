"""Counting rows by whole days before a moment in one grouped query, on SQLite and PostgreSQL.

Day `b` holds the rows with `now - (b + 1) days <= created < now - b days`, exactly (integer
microseconds, no floating point), so a trailing window [now - (b + n) days, now - b days) is the
sum of days b .. b + n - 1 and a chart of 30 rolling windows costs one query, not 60.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, cast, extract, func, literal, select

from db.models.base import UTCDateTime
from db.session import UnitOfWork

DAY_MICROSECONDS = 86_400 * 1_000_000


def _micros_before(uow: UnitOfWork, column: Any, now: datetime) -> ColumnElement[int]:
    moment = literal(now, UTCDateTime())
    if uow.session.get_bind().dialect.name == "postgresql":
        # extract(epoch from interval) is numeric on PostgreSQL 14+: exact to the microsecond.
        return cast(extract("epoch", moment - column) * 1_000_000, BigInteger)

    # SQLite keeps datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text: whole seconds plus the digits.
    def micros(value: Any) -> ColumnElement[int]:
        return (cast(func.strftime("%s", value), BigInteger) * 1_000_000
                + cast(func.substr(value, 21, 6), BigInteger))

    return micros(moment) - micros(column)


def counts_by_day(uow: UnitOfWork, column: Any, *conditions: ColumnElement[bool], now: datetime,
                  since: datetime) -> dict[int, int]:
    """{day before `now`: rows} for the rows with `since <= column < now` and `conditions`."""
    day = (_micros_before(uow, column, now) - 1) // DAY_MICROSECONDS
    rows = uow.session.execute(
        select(day, func.count()).where(column >= since, column < now, *conditions).group_by(day)
    ).all()
    return {int(d): int(n) for d, n in rows}
