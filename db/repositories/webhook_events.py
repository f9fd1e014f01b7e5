"""Stored Stripe events (`stripe_events`): the reads of the delivery log, the webhook tiles and
charts, the test event and the secret roll, and Mark resolved's conditional write.

The receiver's batch insert (services/webhooks.py:store_events) and the worker's claim
(services/event_processing.py) keep their own statements: they are the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, update

from db.models import StripeEvent
from db.repositories.hours import bucket_seconds, hour_bucket
from db.session import UnitOfWork, rows_affected

WEBHOOK_SOURCE = "webhook"  # what the receiver stores; anything else came from a backfill

# What a log row shows (the payload is read only for the open event).
LOG_COLUMNS = (
    StripeEvent.id, StripeEvent.type, StripeEvent.object_id, StripeEvent.created, StripeEvent.received_at,
    StripeEvent.source, StripeEvent.signed_with, StripeEvent.status, StripeEvent.attempts,
    StripeEvent.duplicate_deliveries, StripeEvent.processed_at, StripeEvent.last_error,
    StripeEvent.resolved_by, StripeEvent.resolution_reason,
)


def log_conditions(*, types: Sequence[str] = (), object_id: str | None = None, statuses: Sequence[str] = (),
                   source: str | None = None) -> list[ColumnElement[bool]]:
    """The log's filters: types, an event or object id (exact), statuses, webhook vs backfill."""
    conditions: list[ColumnElement[bool]] = []
    if types:
        conditions.append(StripeEvent.type.in_(list(types)))
    if object_id:
        conditions.append(or_(StripeEvent.object_id == object_id, StripeEvent.id == object_id))
    if statuses:
        conditions.append(StripeEvent.status.in_(list(statuses)))
    if source == "webhook":
        conditions.append(StripeEvent.source == WEBHOOK_SOURCE)
    elif source == "backfill":
        conditions.append(StripeEvent.source != WEBHOOK_SOURCE)
    return conditions


def count_capped(uow: UnitOfWork, conditions: Sequence[ColumnElement[bool]], *, cap: int) -> int:
    """Matching rows counted up to cap + 1: an exact count of 100k+ rows costs a full scan."""
    matching = select(StripeEvent.id).where(*conditions).limit(cap + 1).subquery()
    return int(uow.session.execute(select(func.count()).select_from(matching)).scalar_one())


def log_page(uow: UnitOfWork, conditions: Sequence[ColumnElement[bool]], *, limit: int,
             offset: int) -> Sequence[Any]:
    """One page in the log's order: newest delivery first (the indexes end in received_at, id)."""
    return uow.session.execute(
        select(*LOG_COLUMNS).where(*conditions)
        .order_by(StripeEvent.received_at.desc(), StripeEvent.id.desc())
        .limit(limit).offset(offset)
    ).all()


def log_row_with_payload(uow: UnitOfWork, event_id: str) -> Any:
    return uow.session.execute(
        select(*LOG_COLUMNS, StripeEvent.payload, StripeEvent.resolved_at).where(StripeEvent.id == event_id)
    ).first()


def types_present(uow: UnitOfWork) -> list[str]:
    return list(uow.session.execute(select(StripeEvent.type).distinct().order_by(StripeEvent.type)).scalars())


def get(uow: UnitOfWork, event_id: str) -> StripeEvent | None:
    return uow.session.get(StripeEvent, event_id)


def mark_resolved(uow: UnitOfWork, event_id: str, *, status: str, attempts: int, at: datetime, by: str,
                  reason: str) -> bool:
    """Resolve the event only if it is still in the status and attempt it was read in: a worker
    that claimed it meanwhile wins, and False says nothing changed."""
    changed = uow.session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id, StripeEvent.status == status, StripeEvent.attempts == attempts)
        .values(status="resolved", resolved_at=at, resolved_by=by, resolution_reason=reason, next_attempt_at=None)
        .execution_options(synchronize_session=False))
    return bool(rows_affected(changed))


def deliveries_per_hour_and_key(uow: UnitOfWork, *, since: datetime, until: datetime) -> list[tuple[int, str | None,
                                                                                                    int, int, int]]:
    """Per hour of arrival (unix seconds) and `signed_with`: events stored, deliveries (first
    copies and redeliveries) and how many were handled (processed or ignored); webhooks only."""
    hour = hour_bucket(uow, StripeEvent.received_at).label("hour")
    handled = func.sum(case((StripeEvent.status.in_(("processed", "ignored")), 1), else_=0))
    rows = uow.session.execute(
        select(hour, StripeEvent.signed_with, func.count(), func.sum(1 + StripeEvent.duplicate_deliveries), handled)
        .where(StripeEvent.source == WEBHOOK_SOURCE, StripeEvent.received_at >= since,
               StripeEvent.received_at < until)
        .group_by(hour, StripeEvent.signed_with)
    ).all()
    return [(bucket_seconds(bucket), signed_with, int(events or 0), int(deliveries or 0), int(done or 0))
            for bucket, signed_with, events, deliveries, done in rows]


def created_between(uow: UnitOfWork, *, since: datetime, until: datetime) -> list[tuple[int, str, Any]]:
    """(hour of the event's own `created` in unix seconds, source, payload) of every event stored
    with `created` in [since, until)."""
    hour = hour_bucket(uow, StripeEvent.created).label("hour")
    rows = uow.session.execute(select(hour, StripeEvent.source, StripeEvent.payload)
                               .where(StripeEvent.created >= since, StripeEvent.created < until)).all()
    return [(bucket_seconds(bucket), source, payload) for bucket, source, payload in rows]


def stored_ids(uow: UnitOfWork, event_ids: Sequence[str]) -> set[str]:
    if not event_ids:
        return set()
    return set(uow.session.execute(select(StripeEvent.id).where(StripeEvent.id.in_(list(event_ids)))).scalars())


def last_received_at(uow: UnitOfWork, *, source: str | None = None) -> datetime | None:
    """When the newest event arrived (of one source, e.g. webhook deliveries only)."""
    query = select(func.max(StripeEvent.received_at))
    if source is not None:
        query = query.where(StripeEvent.source == source)
    value: datetime | None = uow.session.execute(query).scalar()
    return value


def status_counts(uow: UnitOfWork) -> dict[str, int]:
    rows = uow.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all()
    return {status: int(count) for status, count in rows}


def unprocessed(uow: UnitOfWork, *, limit: int) -> list[StripeEvent]:
    """Failed, pending and processing events, newest first."""
    return list(uow.session.execute(
        select(StripeEvent).where(StripeEvent.status.in_(("failed", "pending", "processing")))
        .order_by(StripeEvent.created.desc()).limit(limit)).scalars())


def first_about(uow: UnitOfWork, *, object_id: str, event_type: str) -> Any:
    """The first stored event of a type about one object: (id, received_at, status, signed_with)."""
    return uow.session.execute(
        select(StripeEvent.id, StripeEvent.received_at, StripeEvent.status, StripeEvent.signed_with)
        .where(StripeEvent.object_id == object_id, StripeEvent.type == event_type)
        .order_by(StripeEvent.received_at).limit(1)
    ).first()


def deliveries_signed_with(uow: UnitOfWork, fingerprint: str, *, since: datetime,
                           limit: int = 5) -> list[tuple[str, datetime, str | None]]:
    """The first webhook deliveries since `since` whose `signed_with` mentions the key
    fingerprint (a LIKE pre-filter: the caller checks the comma-separated list exactly)."""
    rows = uow.session.execute(
        select(StripeEvent.id, StripeEvent.received_at, StripeEvent.signed_with)
        .where(StripeEvent.source == WEBHOOK_SOURCE, StripeEvent.received_at >= since,
               StripeEvent.signed_with.like(f"%{fingerprint}%"))
        .order_by(StripeEvent.received_at).limit(limit)
    ).all()
    return [(str(event_id), received_at, signed_with) for event_id, received_at, signed_with in rows]
