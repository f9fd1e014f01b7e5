"""The processing backlog the kill-switch status shows: stored events not yet processed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select

from db.models import StripeEvent
from db.session import UnitOfWork


def count_and_oldest(uow: UnitOfWork, statuses: Iterable[str]) -> tuple[int, datetime | None]:
    """How many events are in `statuses` and when the oldest of them was received."""
    count, oldest = uow.session.execute(
        select(func.count(), func.min(StripeEvent.received_at)).where(StripeEvent.status.in_(list(statuses)))
    ).one()
    return int(count), oldest
