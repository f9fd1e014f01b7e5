"""SQL for grouping rows by UTC hour on both databases, shared by the repositories that chart
per hour (metric points, stored events)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func

from db.session import UnitOfWork


def dialect_name(uow: UnitOfWork) -> str:
    """"postgresql" or "sqlite": the few statements that differ ask this."""
    return uow.session.get_bind().dialect.name


def hour_bucket(uow: UnitOfWork, column: Any) -> Any:
    """The hour a timestamp falls in, computed in SQL: date_trunc on PostgreSQL; on SQLite
    the stored text's "YYYY-MM-DD HH" prefix (SQLAlchemy writes UTC datetimes there as
    "YYYY-MM-DD HH:MM:SS.ffffff"), which costs a third of parsing every row with strftime.
    `bucket_seconds` reads either back."""
    if dialect_name(uow) == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", column))  # UTC whatever the session zone
    return func.substr(column, 1, 13)


def bucket_seconds(bucket: Any) -> int:
    """An `hour_bucket` value as the hour's start in unix seconds."""
    if isinstance(bucket, datetime):
        return int((bucket if bucket.tzinfo else bucket.replace(tzinfo=UTC)).timestamp())
    return int(datetime.strptime(str(bucket)[:13], "%Y-%m-%d %H").replace(tzinfo=UTC).timestamp())


def hour_label(seconds: int) -> str:
    """The hour as charts label it: "2026-12-04 18:00" (UTC)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:00")
