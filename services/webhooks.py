"""Webhook intake, dj-stripe style: verify, store once, then process.

A verified event is inserted into `stripe_events` by id in its own
transaction before anything acknowledges it; processing is separate and
claims the row with a conditional UPDATE, so several workers (or a replay
racing a retry) never apply an event twice, and a crash at any point leaves
the row pending or failed, never "seen and dropped". Handlers live in
`event_handlers.py` and are idempotent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from db.models.base import from_unix, utcnow
from db.session import UnitOfWork
from services import metric_points, metric_rollup, prometheus, webhook_counts
from services.event_processing import process_event, process_pending, replay_event
from services.fast_json import dumps_text
from services.runtime import Runtime
from services.webhook_endpoints import EndpointCheck, endpoint_registration_check, prune_webhook_endpoints
from services.webhook_queries import last_event_age_seconds, metric_totals, status_counts, unprocessed_events
from services.webhook_signature import (
    INVALID_SIGNATURE_REASONS,
    LIVEMODE_MISMATCH,
    MAX_BODY_BYTES,
    SignatureError,
    VerifiedEvent,
    check_event,
    livemode_matches,
    parse_signature_header,
    verify_signature,
)

# The webhook pipeline's names in one place for callers (the receiver, sync, the worker, pages);
# each job lives in its own module above.
__all__ = [
    "INVALID_SIGNATURE_REASONS", "LIVEMODE_MISMATCH", "MAX_BODY_BYTES", "EndpointCheck", "SignatureError",
    "VerifiedEvent", "check_event", "endpoint_registration_check", "ingest_event", "last_event_age_seconds",
    "livemode_matches", "metric_totals", "parse_signature_header", "process_event", "process_pending",
    "prune_webhook_endpoints", "record_invalid_signature", "replay_event", "status_counts", "store_events",
    "unprocessed_events", "verify_signature",
]



def _object_id(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    value = obj.get("id")
    return str(value) if value else None


def store_events(runtime: Runtime, events: Sequence[dict[str, Any]], *, source: str = "webhook",
                 uow: UnitOfWork | None = None, connection: Connection | None = None,
                 sqlite_connection: Any = None, count: bool = True) -> list[str]:
    """Store verified events in one transaction; the outcome per event is stored | duplicate | ignored.

    Only a normal return means the rows are committed (the receiver answers 2xx after it);
    an exception means nothing was. A later copy of an id (a redelivery, or the same
    event twice in one batch) only bumps `duplicate_deliveries` and counts a duplicate.
    PostgreSQL: the batch, its duplicate counts, its metric points and their rollup are one
    statement (`_store_postgres`); SQLite: multi-row statements in one transaction.
    `uow`: a unit of work the caller opened (else one of its own). The receiver's writers pass their
    own connection instead: on PostgreSQL `connection`, in autocommit, where the one statement is
    the transaction (no Session, no BEGIN or COMMIT per batch); on SQLite `sqlite_connection`, their
    sqlite3 connection (in autocommit, with the engine's PRAGMAs): the batch is BEGIN IMMEDIATE, its
    statements, COMMIT on it, with no Session (SQLAlchemy's per-batch work was more than SQLite's
    own for a small batch); any error rolls it back and is raised. `count=False`: not counted in
    this process's /metrics (the receiver's writer process: the receiver counts what it answers)."""
    allowed_types = runtime.settings.stripe_webhook_allowed_events
    now = utcnow()
    postgres = runtime.engine.dialect.name == "postgresql"
    rows: list[dict[str, Any]] = []
    first_copy: dict[str, int] = {}
    copies_of: dict[str, int] = {}
    for index, event in enumerate(events):
        copies_of[event["id"]] = copies_of.get(event["id"], 0) + 1
        if event["id"] in first_copy:
            continue
        first_copy[event["id"]] = index
        rows.append({
            "id": event["id"], "type": event["type"], "created": from_unix(event["created"]) or now,
            "livemode": bool(event.get("livemode")), "api_version": event.get("api_version"),
            "payload_json": None if postgres else dumps_text(event), "source": source, "received_at": now,
            "status": "pending" if event["type"] in allowed_types else "ignored",
            "object_id": _object_id(event), "attempts": 0, "duplicate_deliveries": 0,
            # Which configured secrets verified it (fingerprints; the webhook delivery log shows them).
            "signed_with": getattr(event, "signed_with", None),
        })
    if postgres and connection is not None:
        inserted = _store_postgres(connection, events, rows, first_copy, copies_of, source=source, at=now)
        connection.commit()  # in autocommit the statement has committed; this closes SQLAlchemy's autobegin
    elif sqlite_connection is not None and not postgres:
        sqlite_connection.execute("BEGIN IMMEDIATE")
        try:
            inserted = _store_sqlite(sqlite_connection.execute, events, rows, first_copy, source=source, at=now)
            sqlite_connection.execute("COMMIT")
        except BaseException:
            if sqlite_connection.in_transaction:
                sqlite_connection.execute("ROLLBACK")
            raise
    else:
        with uow or runtime.uow() as unit:
            if postgres:
                inserted = _store_postgres(unit.session.connection(), events, rows, first_copy, copies_of,
                                           source=source, at=now)
            else:
                from services import sqlite_bulk

                inserted = _store_sqlite(sqlite_bulk.session_execute(unit.session), events, rows, first_copy,
                                         source=source, at=now)
            unit.commit()
    outcomes = [_outcome(event, index, first_copy, inserted, allowed_types) for index, event in enumerate(events)]
    if count:
        webhook_counts.count_in_process(outcomes, source=source)
    return outcomes


def _outcome(event: dict[str, Any], index: int, first_copy: dict[str, int], inserted: set[str],
             allowed_types: Any) -> str:
    if first_copy[event["id"]] == index and event["id"] in inserted:
        return "stored" if event["type"] in allowed_types else "ignored"
    return "duplicate"


def _store_sqlite(execute: Any, events: Sequence[dict[str, Any]], rows: list[dict[str, Any]],
                  first_copy: dict[str, int], *, source: str, at: datetime) -> set[str]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id, an UPDATE per id already there, then the
    metric points and their hours: one transaction, the caller's (SQLite has one writer at a time;
    the statements are local calls). `execute`: sqlite_bulk.Execute."""
    from services import sqlite_bulk

    pending = {row["id"] for row in rows if row["status"] == "pending"}
    inserted = sqlite_bulk.insert_events(execute, rows, [row["payload_json"] for row in rows])
    copies: dict[str, int] = {}
    metric_rows: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        stored = first_copy[event["id"]] == index and event["id"] in inserted
        outcome = ("stored" if event["id"] in pending else "ignored") if stored else "duplicate"
        if outcome == "duplicate":
            copies[event["id"]] = copies.get(event["id"], 0) + 1
        # What counts as received, duplicate, ignored or backfilled: services/webhook_counts.py.
        metric_rows += webhook_counts.delivery_metric_rows(event, outcome, source=source, at=at)
    sqlite_bulk.add_duplicate_deliveries(execute, copies)
    if metric_rows:
        metric_points.record_metrics_sqlite(execute, metric_rows)
    return inserted


# PostgreSQL: the whole batch in ONE statement (one round trip; in the writer's autocommit
# connection also its own transaction, committed durably before it returns). The events and the
# metric points each come as one JSON document read by json_to_recordset(): a short statement
# whatever the batch size (psycopg prepares it once), one orjson call each, parsed in C.
# - `stored`: the first copy of each id. ON CONFLICT DO UPDATE (not DO NOTHING + a separate
#   UPDATE, whose snapshot would miss a row another receiver committed meanwhile) adds the copies
#   to an existing row; a new row starts with its later in-batch copies. `xmax = 0` tells a row
#   this statement inserted from one it updated (an updated row carries this transaction's lock).
# - `points`: each delivery's metric rows for both outcomes, computed in Python by
#   webhook_counts.delivery_metric_rows; `hinge` keeps the ones whose outcome happened
#   ('inserted', 'conflict', or 'always' for a later in-batch copy).
# - `rolled`: the points that went in, added to their hours (as metric_rollup does).
_STORE_POSTGRES = (
    "WITH batch AS (SELECT * FROM json_to_recordset(CAST(%(events)s AS json)) AS u(id varchar, type varchar,"
    " created timestamptz, livemode boolean, api_version varchar, payload json, status varchar, object_id varchar,"
    " signed_with varchar, later_copies integer)),"
    " stored AS (INSERT INTO stripe_events AS e (id, type, created, livemode, api_version, payload, source,"
    " received_at, status, object_id, attempts, duplicate_deliveries, signed_with)"
    " SELECT id, type, created, livemode, api_version, payload, %(source)s, %(received_at)s, status, object_id, 0,"
    " later_copies, signed_with FROM batch"
    " ON CONFLICT (id) DO UPDATE SET duplicate_deliveries = e.duplicate_deliveries + excluded.duplicate_deliveries + 1"
    " RETURNING e.id, e.xmax = 0 AS inserted),"
    " points AS (INSERT INTO metric_points (name, at, value, tags, dedupe_key)"
    " SELECT p.name, p.at, p.value, p.tags, p.dedupe_key FROM json_to_recordset(CAST(%(points)s AS json))"
    " AS p(name varchar, at timestamptz, value bigint, tags json, dedupe_key varchar, event_id varchar, hinge varchar)"
    " LEFT JOIN stored ON stored.id = p.event_id"
    " WHERE p.hinge = 'always' OR (p.hinge = 'inserted') = stored.inserted"
    " ON CONFLICT DO NOTHING RETURNING name, at, value, tags),"
    " rolled AS (INSERT INTO metric_hourly (hour, name, test, shard, value)"
    " SELECT date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', name,"
    " COALESCE(CAST(tags ->> 'test' AS BOOLEAN), false), %(shard)s, SUM(value)"
    " FROM points GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (hour, name, test, shard) DO UPDATE SET value = metric_hourly.value + excluded.value)"
    " SELECT id FROM stored WHERE inserted"
)


def _store_postgres(connection: Connection, events: Sequence[dict[str, Any]], rows: list[dict[str, Any]],
                    first_copy: dict[str, int], copies_of: dict[str, int], *, source: str, at: datetime) -> set[str]:
    # Sorted by id, so two receivers storing overlapping batches lock the rows in the same order.
    batch = sorted(({"id": row["id"], "type": row["type"], "created": row["created"], "livemode": row["livemode"],
                     "api_version": row["api_version"], "payload": events[first_copy[row["id"]]],
                     "status": row["status"], "object_id": row["object_id"], "signed_with": row["signed_with"],
                     "later_copies": copies_of[row["id"]] - 1} for row in rows), key=lambda item: item["id"])
    status_of = {row["id"]: row["status"] for row in rows}
    points: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        event_id = event["id"]
        if first_copy[event_id] == index:
            if_stored = "stored" if status_of[event_id] == "pending" else "ignored"
            for hinge, outcome in (("inserted", if_stored), ("conflict", "duplicate")):
                points += ({**point, "event_id": event_id, "hinge": hinge}
                           for point in webhook_counts.delivery_metric_rows(event, outcome, source=source, at=at))
        else:
            points += ({**point, "event_id": event_id, "hinge": "always"}
                       for point in webhook_counts.delivery_metric_rows(event, "duplicate", source=source, at=at))
    # By event, in the events' order, so concurrent batches meet on a point's key in the same order.
    points.sort(key=lambda point: point["event_id"])
    # The rollup shard by thread (native thread ids are unique across processes): the writer
    # threads of one receiver do not queue on the same hour's row lock through each other's commit.
    params = {"events": dumps_text(batch), "points": dumps_text(points), "source": source, "received_at": at,
              "shard": threading.get_native_id() % metric_rollup.SHARDS}
    result = connection.exec_driver_sql(_STORE_POSTGRES, params)
    return {row[0] for row in result}


def ingest_event(runtime: Runtime, event: dict[str, Any], *, source: str = "webhook",
                 process: bool | None = None) -> str:
    """Store a verified event once. Returns stored | duplicate | ignored.

    `process` runs its effects right after the commit; by default webhooks do so only
    in inline mode (the demo) and backfilled events always do."""
    outcome = store_events(runtime, [event], source=source)[0]
    if process is None:
        process = runtime.settings.webhook_process_inline or source != "webhook"
    if outcome == "stored" and process:
        process_event(runtime, event["id"])
    return outcome




def record_invalid_signature(runtime: Runtime, reason: str) -> None:
    """One invalid signature, written at once (tools and tests); the receiver batches them
    through `RejectionCounter` instead."""
    prometheus.WEBHOOK_DELIVERIES.labels("invalid_signature").inc()
    with runtime.uow() as uow:
        metric_points.record_metric(uow, metric_points.WEBHOOK_INVALID_SIGNATURE, tags={"reason": reason})
        uow.commit()


