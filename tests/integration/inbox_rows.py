"""What the receiver's writers left in the inbox, read back for the writer tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from db.models import MetricPoint, StripeEvent


def stored_events(runtime: Any) -> dict[str, tuple[str, int]]:
    """Each stored event's id -> (status, duplicate_deliveries)."""
    with runtime.uow() as uow:
        rows = uow.session.execute(select(StripeEvent.id, StripeEvent.status, StripeEvent.duplicate_deliveries))
        return {event_id: (status, duplicates) for event_id, status, duplicates in rows}


def metric_count(runtime: Any, name: str) -> int:
    with runtime.uow() as uow:
        return int(uow.session.execute(select(func.count()).where(MetricPoint.name == name)).scalar_one())
