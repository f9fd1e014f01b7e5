"""Read models over stored events and metric points for the Webhooks page and /healthz.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from db.models import MetricPoint, StripeEvent
from db.models.base import utcnow
from db.session import UnitOfWork


def last_event_age_seconds(uow: UnitOfWork, now: datetime | None = None) -> float | None:
    with uow:
        last = uow.session.execute(select(func.max(StripeEvent.received_at))).scalar()
    if last is None:
        return None
    return ((now or utcnow()) - last).total_seconds()


def metric_totals(uow: UnitOfWork, names: Sequence[str], *, since: datetime) -> dict[str, int]:
    with uow:
        rows = uow.session.execute(
            select(MetricPoint.name, func.coalesce(func.sum(MetricPoint.value), 0))
            .where(MetricPoint.name.in_(list(names)), MetricPoint.at >= since)
            .group_by(MetricPoint.name)
        ).all()
    totals = {name: 0 for name in names}
    totals.update({name: int(total) for name, total in rows})
    return totals


def status_counts(uow: UnitOfWork) -> dict[str, int]:
    with uow:
        rows = uow.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all()
    return {status: int(count) for status, count in rows}


def unprocessed_events(uow: UnitOfWork, *, limit: int = 200) -> list[dict[str, Any]]:
    with uow:
        rows = uow.session.execute(
            select(StripeEvent)
            .where(StripeEvent.status.in_(("failed", "pending", "processing")))
            .order_by(StripeEvent.created.desc())
            .limit(limit)
        ).scalars()
        return [
            {"id": r.id, "type": r.type, "status": r.status, "attempts": r.attempts, "last_error": r.last_error,
             "created": r.created, "next_attempt_at": r.next_attempt_at}
            for r in rows
        ]

