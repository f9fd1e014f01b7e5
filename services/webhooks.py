"""Webhook intake, dj-stripe style: verify, store once, then process.

A verified event is inserted into `stripe_events` by id in its own
transaction before anything acknowledges it; processing is separate and
claims the row with a conditional UPDATE, so several workers (or a replay
racing a retry) never apply an event twice, and a crash at any point leaves
the row pending or failed, never "seen and dropped". Handlers live in
`event_handlers.py` and are idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text, update

from db.models import StripeEvent
from db.models.base import from_unix, utcnow
from db.session import UnitOfWork
from services import metric_points, prometheus, webhook_counts
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
                 uow: UnitOfWork | None = None) -> list[str]:
    """Store verified events in one transaction; the outcome per event is stored | duplicate | ignored.

    Only a normal return means the rows are committed (the receiver answers 2xx after it);
    an exception means nothing was. A later copy of an id (a redelivery, or the same
    event twice in one batch) only bumps `duplicate_deliveries` and counts a duplicate.
    The batch is one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING id (the ids that
    went in), one UPDATE per id that was already there, and one INSERT of the metric points.
    `uow` lets the receiver's writer reuse its own connection."""
    allowed_types = runtime.settings.stripe_webhook_allowed_events
    now = utcnow()
    postgres = runtime.engine.dialect.name == "postgresql"
    rows: list[dict[str, Any]] = []
    first_copy: dict[str, int] = {}
    for index, event in enumerate(events):
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
    with uow or runtime.uow() as unit:
        if postgres:
            firsts = [events[index] for index in first_copy.values()]
            inserted = _insert_events_postgres(unit, firsts, rows, source=source, received_at=now)
        else:
            from services import sqlite_bulk

            inserted = sqlite_bulk.insert_events(unit.session, rows, [row["payload_json"] for row in rows])
        outcomes: list[str] = []
        copies: dict[str, int] = {}
        metric_rows: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            if first_copy[event["id"]] == index and event["id"] in inserted:
                outcomes.append("stored" if event["type"] in allowed_types else "ignored")
            else:
                outcomes.append("duplicate")
                copies[event["id"]] = copies.get(event["id"], 0) + 1
            # What counts as received, duplicate, ignored or backfilled: services/webhook_counts.py.
            metric_rows += webhook_counts.delivery_metric_rows(event, outcomes[-1], source=source, at=now)
        for event_id, count in copies.items():
            unit.session.execute(update(StripeEvent).where(StripeEvent.id == event_id)
                                 .values(duplicate_deliveries=StripeEvent.duplicate_deliveries + count))
        metric_points.record_metrics(unit, metric_rows)
        unit.commit()
    webhook_counts.count_in_process(outcomes, source=source)
    return outcomes


# PostgreSQL: the whole batch as one JSON document read by json_to_recordset(): one short statement
# whatever the batch size (psycopg prepares it once), one orjson call to encode it, and PostgreSQL
# parses it in C (a multi-row VALUES would be a new, long query text per batch size, and text
# arrays make psycopg escape every quote of every payload in Python).
_INSERT_EVENTS_POSTGRES = text(
    "INSERT INTO stripe_events (id, type, created, livemode, api_version, payload, source, received_at, status,"
    " object_id, attempts, duplicate_deliveries, signed_with)"
    " SELECT u.id, u.type, u.created, u.livemode, u.api_version, u.payload, :source, :received_at,"
    " u.status, u.object_id, 0, 0, u.signed_with"
    " FROM json_to_recordset(CAST(:batch AS json)) AS u(id varchar, type varchar, created timestamptz,"
    " livemode boolean, api_version varchar, payload json, status varchar, object_id varchar,"
    " signed_with varchar)"
    " ON CONFLICT DO NOTHING RETURNING id"
)


def _insert_events_postgres(unit: UnitOfWork, events: list[dict[str, Any]], rows: list[dict[str, Any]], *,
                            source: str, received_at: datetime) -> set[str]:
    batch = [{"id": row["id"], "type": row["type"], "created": row["created"], "livemode": row["livemode"],
              "api_version": row["api_version"], "payload": event, "status": row["status"],
              "object_id": row["object_id"], "signed_with": row["signed_with"]}
             for event, row in zip(events, rows, strict=True)]
    params = {"batch": dumps_text(batch), "source": source, "received_at": received_at}
    return set(unit.session.execute(_INSERT_EVENTS_POSTGRES, params).scalars())


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


