"""The hourly rollup of metric_points (table metric_hourly): what the First-24h board reads.

Whatever writes metric points (services/metric_points.py: record_metric, record_metrics) adds the
points it actually inserted (a dedupe_key already counted adds nothing) to their hour's row in the
same transaction, so the rollup always equals the raw aggregate
`SUM(value) GROUP BY name, UTC hour, test tag`. `rebuild` recomputes it from the raw points
(after a bulk load that bypassed record_metrics, e.g. benchmarks/metrics.py)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Table,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql

from db.models import MetricHourly, MetricPoint
from db.session import UnitOfWork

HOUR = timedelta(hours=1)
# Each writing process adds to shard (pid % SHARDS): concurrent receivers and workers on one
# PostgreSQL then rarely wait on each other's row lock for the same metric and hour.
SHARDS = 16
TEST_TAG = "test"  # the tag of QA / test-clock points (services/metric_points.TEST_TAG reads it from here)



def test_points() -> ColumnElement[bool]:
    """SQL: the point was tagged as QA / test-clock activity (portable JSON read)."""
    return func.coalesce(MetricPoint.tags[TEST_TAG].as_boolean(), false()) != false()

def hour_of(moment: datetime) -> datetime:
    """The UTC hour a moment falls in."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def is_test(tags: Mapping[str, Any] | None) -> bool:
    """Python's reading of metric_points.test_points(): tagged {"test": true}."""
    return bool(tags) and tags.get(TEST_TAG) is True  # type: ignore[union-attr]


def shard() -> int:
    return os.getpid() % SHARDS


def add_points(uow: UnitOfWork, points: Iterable[Mapping[str, Any]]) -> None:
    """Add inserted points (name, at, value, tags) to their hours' rows."""
    sums: dict[tuple[datetime, str, bool], int] = {}
    for point in points:
        key = (hour_of(point["at"]), point["name"], is_test(point.get("tags")))
        sums[key] = sums.get(key, 0) + int(point["value"])
    if not sums:
        return
    # Sorted, so two transactions touching the same rows lock them in the same order.
    ordered = sorted(sums.items())
    if uow.session.get_bind().dialect.name == "postgresql":
        mine = shard()
        uow.session.execute(_upsert_postgres(), [{"hour": h, "name": n, "test": t, "shard": mine, "value": v}
                                                 for (h, n, t), v in ordered])
    else:
        from services import sqlite_bulk

        sqlite_bulk.add_to_rollup(uow.session, ordered, shard=shard())


@functools.cache
def _upsert_postgres() -> Any:
    table: Table = MetricHourly.__table__  # type: ignore[assignment]
    statement = postgresql.insert(table)
    return statement.on_conflict_do_update(index_elements=["hour", "name", "test", "shard"],
                                           set_={"value": table.c.value + statement.excluded.value})


# PostgreSQL: insert a batch of points (one JSON document) and roll up the ones that went in, in one
# statement and one round trip.
INSERT_POINTS_AND_ROLL_UP_POSTGRES = text(
    "WITH inserted AS ("
    " INSERT INTO metric_points (name, at, value, tags, dedupe_key)"
    " SELECT u.name, u.at, u.value, u.tags, u.dedupe_key"
    " FROM json_to_recordset(CAST(:batch AS json))"
    " AS u(name varchar, at timestamptz, value bigint, tags json, dedupe_key varchar)"
    " ON CONFLICT DO NOTHING RETURNING name, at, value, tags)"
    " INSERT INTO metric_hourly (hour, name, test, shard, value)"
    " SELECT date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', name,"
    " COALESCE(CAST(tags ->> 'test' AS BOOLEAN), false), :shard, SUM(value)"
    " FROM inserted GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (hour, name, test, shard) DO UPDATE SET value = metric_hourly.value + excluded.value"
)


# GROUP BY the first three columns by position (PostgreSQL would not match the repeated
# expressions, whose bound parameters get new names).
_FIRST_THREE: tuple[Any, ...] = (literal_column("1"), literal_column("2"), literal_column("3"))


def _raw_hour(dialect: str) -> Any:
    """The UTC hour of metric_points.at as the rollup stores it."""
    if dialect == "postgresql":
        return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", MetricPoint.at)))
    # SQLite keeps UTC datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" text.
    return func.substr(MetricPoint.at, 1, 13).op("||")(":00:00.000000")


def rebuild(uow: UnitOfWork) -> None:
    """Recompute the whole rollup from metric_points (inside the caller's transaction)."""

    dialect = uow.session.get_bind().dialect.name
    hour = _raw_hour(dialect)
    test = test_points()
    uow.session.execute(delete(MetricHourly))
    uow.session.execute(insert(MetricHourly).from_select(
        ["hour", "name", "test", "shard", "value"],
        select(hour, MetricPoint.name, test, literal(0), func.sum(MetricPoint.value)).group_by(*_FIRST_THREE)))


def raw_aggregate(uow: UnitOfWork) -> dict[tuple[datetime, str, bool], int]:
    """The raw aggregate the rollup must equal (tests and checks)."""

    hour = _raw_hour(uow.session.get_bind().dialect.name)
    rows = uow.session.execute(select(hour, MetricPoint.name, test_points(), func.sum(MetricPoint.value))
                               .group_by(*_FIRST_THREE)).all()
    return {(_as_hour(h), n, bool(t)): int(v) for h, n, t, v in rows}


def rollup(uow: UnitOfWork) -> dict[tuple[datetime, str, bool], int]:
    """The rollup, its shards summed."""
    rows = uow.session.execute(select(MetricHourly.hour, MetricHourly.name, MetricHourly.test, MetricHourly.value))
    sums: dict[tuple[datetime, str, bool], int] = {}
    for h, n, t, v in rows:
        key = (_as_hour(h), n, bool(t))
        sums[key] = sums.get(key, 0) + int(v)
    return {key: value for key, value in sums.items() if value}


def _as_hour(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.strptime(str(value)[:13], "%Y-%m-%d %H").replace(tzinfo=UTC)


def hourly_sums(uow: UnitOfWork, *, names: Iterable[str], start_hour: datetime, end_hour: datetime,
                test: bool) -> list[tuple[str, int, int]]:
    """(name, hour start in unix seconds, sum of the shards) for every rolled-up hour in
    [start_hour, end_hour); the hour comes back as a number computed in SQL (parsing thousands of
    datetimes in Python was a third of a 7-day board)."""
    if uow.session.get_bind().dialect.name == "postgresql":
        epoch = cast(func.extract("epoch", MetricHourly.hour), BigInteger)
    else:
        epoch = cast(func.strftime("%s", MetricHourly.hour), Integer)
    rows = uow.session.execute(
        select(MetricHourly.name, epoch, func.sum(MetricHourly.value))
        .where(MetricHourly.hour >= start_hour, MetricHourly.hour < end_hour, MetricHourly.test == test,
               MetricHourly.name.in_(list(names)))
        .group_by(MetricHourly.name, MetricHourly.hour)).all()
    return [(name, int(hour), int(value)) for name, hour, value in rows]
