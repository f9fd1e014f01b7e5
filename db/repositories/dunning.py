"""The invoices dunning reads: failed or action-required invoices outside the QA matrix."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from db.models import Invoice
from db.session import UnitOfWork

SETTLED_STATUSES = ("void", "uncollectible", "paid")


def _production_invoice() -> ColumnElement[bool]:
    """Not a test-clock (QA matrix) invoice: those stay out of the production dunning figures."""
    clock: ColumnElement[Any] = Invoice.raw["test_clock"].as_string()
    return clock.is_(None)


def entered_between(uow: UnitOfWork, since: datetime, until: datetime) -> list[Invoice]:
    """Invoices whose payment failed or needed action in [since, until]."""
    return list(uow.session.execute(
        select(Invoice).where(
            _production_invoice(),
            or_(Invoice.payment_failed_at.between(since, until), Invoice.action_required_at.between(since, until))
        )
    ).scalars())


def open_cases(uow: UnitOfWork, *, limit: int) -> list[Invoice]:
    """Failed or action-required invoices not recovered nor settled, oldest case first."""
    return list(uow.session.execute(
        select(Invoice)
        .where(or_(Invoice.payment_failed_at.is_not(None), Invoice.action_required_at.is_not(None)),
               Invoice.recovered_at.is_(None), Invoice.status.notin_(SETTLED_STATUSES),
               _production_invoice())
        .order_by(func.coalesce(Invoice.payment_failed_at, Invoice.action_required_at))
        .limit(limit)
    ).scalars())
