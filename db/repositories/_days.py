"""Counting rows by whole days before a moment, in one statement.

Day `b` holds the rows with `now - (b + 1) days <= created < now - b days`, so a trailing window
[now - (b + n) days, now - b days) is the sum of days b .. b + n - 1, and a chart of 30 rolling
30-day windows reads each row once instead of 30 times. Each day is its own range count (UNION
ALL), which an index on the column answers without visiting the rows and which compares the
stored values exactly on SQLite and PostgreSQL (no date arithmetic per row).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select, union_all

from db.session import UnitOfWork

DAY = timedelta(days=1)


def counts_by_day(uow: UnitOfWork, column: Any, *conditions: ColumnElement[bool], now: datetime,
                  days: int) -> dict[int, int]:
    """{day before `now`: rows} for days 0 .. days - 1, with `conditions`."""
    if days <= 0:
        return {}
    parts = [select(literal(day).label("day"), func.count().label("n"))
             .where(column >= now - (day + 1) * DAY, column < now - day * DAY, *conditions)
             for day in range(days)]
    return {int(day): int(n) for day, n in uow.session.execute(union_all(*parts)).all() if n}
