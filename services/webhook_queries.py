"""Read models over stored events and metric points for the Webhooks page and /healthz.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from db.models.base import utcnow
from db.repositories import metrics as metric_rows
from db.repositories import webhook_events
from db.session import UnitOfWork


def last_event_age_seconds(uow: UnitOfWork, now: datetime | None = None) -> float | None:
    with uow:
        last = webhook_events.last_received_at(uow)
    if last is None:
        return None
    return ((now or utcnow()) - last).total_seconds()


def metric_totals(uow: UnitOfWork, names: Sequence[str], *, since: datetime) -> dict[str, int]:
    with uow:
        return metric_rows.point_totals(uow, names, since=since)


def status_counts(uow: UnitOfWork) -> dict[str, int]:
    with uow:
        return webhook_events.status_counts(uow)


def unprocessed_events(uow: UnitOfWork, *, limit: int = 200) -> list[dict[str, Any]]:
    with uow:
        return [
            {"id": r.id, "type": r.type, "status": r.status, "attempts": r.attempts, "last_error": r.last_error,
             "created": r.created, "next_attempt_at": r.next_attempt_at}
            for r in webhook_events.unprocessed(uow, limit=limit)
        ]
