"""Metric points (`metric_points`) and their hourly rollup (`metric_hourly`): the writes that
record them and every read the board, the alerts, the webhook tiles and the launch figures make.

A point tagged {"test": true} is QA-matrix or test-clock activity; `production_points` and
`test_points` are the one SQL reading of that tag (services/metric_rollup.is_test the Python one).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
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

from db.models import MetricHourly, MetricPoint, MetricsSnapshot, ReconcileRun
from db.repositories.hours import bucket_seconds, dialect_name, hour_bucket
from db.session import UnitOfWork, insert_ignoring_conflicts

TEST_TAG = "test"
HourKey = tuple[datetime, str, bool]  # (UTC hour, metric name, test activity)


def test_points() -> ColumnElement[bool]:
    """SQL: the point was tagged as QA / test-clock activity (portable JSON read)."""
    return func.coalesce(MetricPoint.tags[TEST_TAG].as_boolean(), false()) != false()


def production_points() -> ColumnElement[bool]:
    """SQL: the point counts toward production figures."""
    return func.coalesce(MetricPoint.tags[TEST_TAG].as_boolean(), false()) == false()


def _kind(test: bool | None) -> list[ColumnElement[bool]]:
    """None: every point; True: test activity only; False: production only."""
    if test is None:
        return []
    return [test_points() if test else production_points()]


# --- writes ---------------------------------------------------------------------------------------
def insert_point(uow: UnitOfWork, row: dict[str, Any]) -> bool:
    """One point; False when its dedupe_key was already counted (the unique key decides)."""
    inserted = uow.session.execute(
        insert_ignoring_conflicts(uow.session, MetricPoint).values(**row).returning(MetricPoint.id)).first()
    return inserted is not None


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


def insert_points_and_roll_up_postgres(uow: UnitOfWork, batch_json: str, *, shard: int) -> None:
    uow.session.execute(INSERT_POINTS_AND_ROLL_UP_POSTGRES, {"batch": batch_json, "shard": shard})


@functools.cache
def _upsert_postgres() -> Any:
    table: Table = MetricHourly.__table__  # type: ignore[assignment]
    statement = postgresql.insert(table)
    return statement.on_conflict_do_update(index_elements=["hour", "name", "test", "shard"],
                                           set_={"value": table.c.value + statement.excluded.value})


def add_to_hours_postgres(uow: UnitOfWork, ordered: Sequence[tuple[HourKey, int]], *, shard: int) -> None:
    """Add sums to their hours' rows (PostgreSQL upsert; sorted by the caller so two transactions
    lock the same rows in the same order)."""
    uow.session.execute(_upsert_postgres(), [{"hour": h, "name": n, "test": t, "shard": shard, "value": v}
                                             for (h, n, t), v in ordered])


# GROUP BY the first three columns by position (PostgreSQL would not match the repeated
# expressions, whose bound parameters get new names).
_FIRST_THREE: tuple[Any, ...] = (literal_column("1"), literal_column("2"), literal_column("3"))


def _raw_hour(uow: UnitOfWork) -> Any:
    """The UTC hour of metric_points.at as the rollup stores it."""
    if dialect_name(uow) == "postgresql":
        return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", MetricPoint.at)))
    # SQLite keeps UTC datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" text.
    return func.substr(MetricPoint.at, 1, 13).op("||")(":00:00.000000")


def rebuild_rollup(uow: UnitOfWork) -> None:
    """Recompute the whole rollup from metric_points (inside the caller's transaction)."""
    uow.session.execute(delete(MetricHourly))
    uow.session.execute(insert(MetricHourly).from_select(
        ["hour", "name", "test", "shard", "value"],
        select(_raw_hour(uow), MetricPoint.name, test_points(), literal(0), func.sum(MetricPoint.value))
        .group_by(*_FIRST_THREE)))


# --- reads ------------------------------------------------------------------------------------------
def _as_hour(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.strptime(str(value)[:13], "%Y-%m-%d %H").replace(tzinfo=UTC)


def raw_aggregate(uow: UnitOfWork) -> dict[HourKey, int]:
    """The raw aggregate the rollup must equal (tests and checks)."""
    rows = uow.session.execute(select(_raw_hour(uow), MetricPoint.name, test_points(), func.sum(MetricPoint.value))
                               .group_by(*_FIRST_THREE)).all()
    return {(_as_hour(h), n, bool(t)): int(v) for h, n, t, v in rows}


def rollup(uow: UnitOfWork) -> dict[HourKey, int]:
    """The rollup, its shards summed."""
    rows = uow.session.execute(select(MetricHourly.hour, MetricHourly.name, MetricHourly.test, MetricHourly.value))
    sums: dict[HourKey, int] = {}
    for h, n, t, v in rows:
        key = (_as_hour(h), n, bool(t))
        sums[key] = sums.get(key, 0) + int(v)
    return {key: value for key, value in sums.items() if value}


def hourly_sums(uow: UnitOfWork, *, names: Iterable[str], start_hour: datetime, end_hour: datetime,
                test: bool) -> list[tuple[str, int, int]]:
    """(name, hour start in unix seconds, sum of the shards) for every rolled-up hour in
    [start_hour, end_hour); the hour comes back as a number computed in SQL (parsing thousands of
    datetimes in Python was a third of a 7-day board)."""
    if dialect_name(uow) == "postgresql":
        epoch = cast(func.extract("epoch", MetricHourly.hour), BigInteger)
    else:
        epoch = cast(func.strftime("%s", MetricHourly.hour), Integer)
    rows = uow.session.execute(
        select(MetricHourly.name, epoch, func.sum(MetricHourly.value))
        .where(MetricHourly.hour >= start_hour, MetricHourly.hour < end_hour, MetricHourly.test == test,
               MetricHourly.name.in_(list(names)))
        .group_by(MetricHourly.name, MetricHourly.hour)).all()
    return [(name, int(hour), int(value)) for name, hour, value in rows]


def point_sums_per_hour(uow: UnitOfWork, names: Sequence[str], *, start: datetime, end: datetime,
                        test: bool | None) -> dict[tuple[str, int], int]:
    """{(metric, hour start in unix seconds): sum} straight from metric_points over [start, end)."""
    bucket = hour_bucket(uow, MetricPoint.at).label("bucket")
    rows = uow.session.execute(
        select(MetricPoint.name, bucket, func.sum(MetricPoint.value))
        .where(MetricPoint.at >= start, MetricPoint.at < end, MetricPoint.name.in_(list(names)), *_kind(test))
        .group_by(MetricPoint.name, bucket)
    ).all()
    return {(name, bucket_seconds(b)): int(total or 0) for name, b, total in rows}


def point_totals(uow: UnitOfWork, names: Sequence[str], *, since: datetime, until: datetime | None = None,
                 test: bool | None = None) -> dict[str, int]:
    """Each metric's sum over [since, until) (until: open-ended), every name present (0 if none)."""
    query = (select(MetricPoint.name, func.coalesce(func.sum(MetricPoint.value), 0))
             .where(MetricPoint.name.in_(list(names)), MetricPoint.at >= since, *_kind(test))
             .group_by(MetricPoint.name))
    if until is not None:
        query = query.where(MetricPoint.at < until)
    totals = dict.fromkeys(names, 0)
    totals.update({name: int(total) for name, total in uow.session.execute(query).all()})
    return totals


def production_total(uow: UnitOfWork, name: str, *, start: datetime, end: datetime) -> int:
    """One metric's production sum over [start, end)."""
    return point_totals(uow, [name], since=start, until=end, test=False)[name]


def largest_reconcile_apply(uow: UnitOfWork, *, since: datetime, except_trigger: str) -> int | None:
    """The most changes one reconciliation run applied since `since` (QA runs left out)."""
    biggest: int | None = uow.session.execute(
        select(func.max(ReconcileRun.applied)).where(ReconcileRun.started_at >= since,
                                                     ReconcileRun.trigger != except_trigger)).scalar()
    return biggest


# --- frozen snapshots of the board -----------------------------------------------------------------------
def add_snapshot(uow: UnitOfWork, **fields: Any) -> int:
    """Insert a snapshot (created_at, created_by, window_start, window_end, figures, content_sha256)."""
    row = MetricsSnapshot(**fields)
    uow.session.add(row)
    uow.session.flush()
    return row.id


def snapshot(uow: UnitOfWork, snapshot_id: int) -> MetricsSnapshot | None:
    return uow.session.get(MetricsSnapshot, snapshot_id)


def newest_snapshots(uow: UnitOfWork, *, limit: int) -> list[MetricsSnapshot]:
    return list(uow.session.execute(select(MetricsSnapshot).order_by(MetricsSnapshot.id.desc()).limit(limit))
                .scalars())
