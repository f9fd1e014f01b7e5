"""Batch writes on SQLite as plain multi-row statements (the receiver's group commit, metric points
and their hourly rollup): the SQL text is built once per batch size and cached, values are bound
as SQLite stores them (UTC datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" text, as SQLAlchemy writes
them; booleans as 0/1; JSON as text), so a batch costs SQLite's own work plus a few microseconds of
Python per row instead of SQLAlchemy's per-row parameter processing. Each function takes an
`Execute`: a Session's connection (`session_execute`, inside its transaction) or the receiver
writer's own sqlite3 connection's `execute` (no SQLAlchemy at all on that path)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from services.fast_json import dumps_text

# Only constant column names and "?" placeholders are ever formatted into the SQL below.
# Rows per statement: under SQLite's 32,766 bound parameters at 10 per row.
ROWS_PER_STATEMENT = 500

EVENT_COLUMNS = ("id", "type", "created", "livemode", "api_version", "payload", "source", "received_at", "status",
                 "object_id", "signed_with")
POINT_COLUMNS = ("name", "at", "value", "tags", "dedupe_key")

# Runs one SQL statement with positional parameters and returns its rows.
Execute = Callable[[str, Sequence[Any]], Iterable[Sequence[Any]]]


def session_execute(session: Session) -> Execute:
    """The statements on the session's connection (its transaction and its events)."""
    def execute(sql: str, params: Sequence[Any]) -> Iterable[Sequence[Any]]:
        return session.connection().exec_driver_sql(sql, tuple(params))
    return execute


def sqlite_datetime(moment: datetime) -> str:
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
            f".{utc.microsecond:06d}")


@functools.cache
def _events_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,0,0)"] * rows)
    columns = ", ".join(EVENT_COLUMNS)
    return (f"INSERT INTO stripe_events ({columns}, attempts, duplicate_deliveries) VALUES {values}"  # noqa: S608
            " ON CONFLICT DO NOTHING RETURNING id")


@functools.cache
def _points_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?)"] * rows)
    return (f"INSERT INTO metric_points ({', '.join(POINT_COLUMNS)}) VALUES {values}"  # noqa: S608
            " ON CONFLICT DO NOTHING RETURNING dedupe_key")


@functools.cache
def _rollup_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?)"] * rows)
    return (f"INSERT INTO metric_hourly (hour, name, test, shard, value) VALUES {values}"  # noqa: S608
            " ON CONFLICT (hour, name, test, shard) DO UPDATE SET value = metric_hourly.value + excluded.value")


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[start:start + ROWS_PER_STATEMENT] for start in range(0, len(items), ROWS_PER_STATEMENT)]


def insert_events(execute: Execute, rows: Sequence[dict[str, Any]], payloads: Sequence[str]) -> set[str]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the ids that went in."""
    inserted: set[str] = set()
    for chunk, texts in zip(_chunks(rows), _chunks(payloads), strict=True):
        params: list[Any] = []
        for row, payload in zip(chunk, texts, strict=True):
            params += (row["id"], row["type"], sqlite_datetime(row["created"]), 1 if row["livemode"] else 0,
                       row["api_version"], payload, row["source"], sqlite_datetime(row["received_at"]), row["status"],
                       row["object_id"], row.get("signed_with"))
        inserted.update(r[0] for r in execute(_events_sql(len(chunk)), params))
    return inserted


def add_duplicate_deliveries(execute: Execute, copies: dict[str, int]) -> None:
    """duplicate_deliveries += n for events already stored."""
    for event_id, count in copies.items():
        execute("UPDATE stripe_events SET duplicate_deliveries = duplicate_deliveries + ? WHERE id = ?",
                (count, event_id))


def insert_points(execute: Execute, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """INSERT ... ON CONFLICT DO NOTHING for metric_row()s; returns the rows that went in (a
    dedupe_key already counted, or repeated later in the batch, does not)."""
    inserted: list[dict[str, Any]] = []
    for chunk in _chunks(rows):
        params: list[Any] = []
        for row in chunk:
            params += (row["name"], sqlite_datetime(row["at"]), row["value"], dumps_text(row["tags"]),
                       row["dedupe_key"])
        keys = {r[0] for r in execute(_points_sql(len(chunk)), params)}
        seen: set[str] = set()
        for row in chunk:
            key = row["dedupe_key"]
            if key is None:
                inserted.append(row)
            elif key in keys and key not in seen:
                seen.add(key)
                inserted.append(row)
    return inserted


def add_to_rollup(execute: Execute, sums: Sequence[tuple[tuple[datetime, str, bool], int]], *, shard: int) -> None:
    """Upsert (hour, name, test, shard) += value, in the given (sorted) order."""
    for chunk in _chunks(sums):
        params: list[Any] = []
        for (hour, name, test), value in chunk:
            params += (sqlite_datetime(hour), name, 1 if test else 0, shard, value)
        execute(_rollup_sql(len(chunk)), params)
