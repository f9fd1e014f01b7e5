"""The hourly rollup of metric_points (table metric_hourly): what the First-24h board reads.

Whatever writes metric points (services/metric_points.py: record_metric, record_metrics) adds the
points it actually inserted (a dedupe_key already counted adds nothing) to their hour's row in the
same transaction, so the rollup always equals the raw aggregate
`SUM(value) GROUP BY name, UTC hour, test tag`. `rebuild` recomputes it from the raw points
(after a bulk load that bypassed record_metrics, e.g. benchmarks/metrics.py). The statements are
in db/repositories/metrics.py; this module decides what goes in."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from db.repositories import metrics as metric_rows
from db.repositories.hours import dialect_name
from db.repositories.metrics import TEST_TAG, hourly_sums, raw_aggregate, rollup, test_points
from db.repositories.metrics import rebuild_rollup as rebuild
from db.session import UnitOfWork

# The rollup's reads and its rebuild, beside the rule that fills it.
__all__ = ["HOUR", "SHARDS", "TEST_TAG", "add_points", "hour_of", "hour_sums", "hourly_sums", "is_test",
           "raw_aggregate", "rebuild", "rollup", "shard", "test_points"]

HOUR = timedelta(hours=1)
# Each writing process adds to shard (pid % SHARDS): concurrent receivers and workers on one
# PostgreSQL then rarely wait on each other's row lock for the same metric and hour.
SHARDS = 16


def hour_of(moment: datetime) -> datetime:
    """The UTC hour a moment falls in."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def is_test(tags: Mapping[str, Any] | None) -> bool:
    """Python's reading of metric_points.test_points(): tagged {"test": true}."""
    return bool(tags) and tags.get(TEST_TAG) is True  # type: ignore[union-attr]


def shard() -> int:
    return os.getpid() % SHARDS


def hour_sums(points: Iterable[Mapping[str, Any]]) -> list[tuple[tuple[datetime, str, bool], int]]:
    """Inserted points (name, at, value, tags) summed per (hour, name, test), sorted: two
    transactions touching the same rollup rows then lock them in the same order."""
    sums: dict[tuple[datetime, str, bool], int] = {}
    for point in points:
        key = (hour_of(point["at"]), point["name"], is_test(point.get("tags")))
        sums[key] = sums.get(key, 0) + int(point["value"])
    return sorted(sums.items())


def add_points(uow: UnitOfWork, points: Iterable[Mapping[str, Any]]) -> None:
    """Add inserted points (name, at, value, tags) to their hours' rows."""
    ordered = hour_sums(points)
    if not ordered:
        return
    if dialect_name(uow) == "postgresql":
        metric_rows.add_to_hours_postgres(uow, ordered, shard=shard())
    else:
        from services import sqlite_bulk

        sqlite_bulk.add_to_rollup(sqlite_bulk.session_execute(uow.session), ordered, shard=shard())
