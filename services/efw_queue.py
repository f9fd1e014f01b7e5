"""Early fraud warnings, the reads: the queue (filtering and paging in SQL, open and
actionable first), one warning with its refunded amount and dispute, and a charge's refund
history. services/fraud_warnings.py (the decisions) re-exports these names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from db.models import FraudWarning
from db.models.base import utcnow
from db.repositories import customer_history as history
from db.repositories import fraud_warnings as efw_repo
from db.session import UnitOfWork

STATUSES = ("open", "refunding", "refunded", "ignored")


# --- the queue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EfwFilter:
    statuses: tuple[str, ...] = ("open", "refunding")
    fraud_types: tuple[str, ...] = ()
    actionable: bool | None = None
    max_age_days: int | None = None
    limit: int = 500
    offset: int = 0


@dataclass(frozen=True)
class EfwRow:
    id: str
    created: datetime | None
    charge_id: str
    customer_email: str | None
    amount: int
    amount_refunded: int
    currency: str
    fraud_type: str | None
    actionable: bool
    status: str
    actor: str | None
    decided_at: datetime | None
    reason: str | None
    refund_id: str | None
    dispute_id: str | None
    dispute_status: str | None

    @property
    def remaining(self) -> int:
        return max(0, self.amount - self.amount_refunded)

    @property
    def resolution(self) -> str | None:
        """Why an open warning needs nothing more: its charge is disputed or fully refunded."""
        if self.dispute_id:
            return "disputed"
        if self.remaining <= 0:
            return "resolved by refund"
        return None

    @property
    def shown_status(self) -> str:
        """What the queue calls it: "open" only while something can still be done."""
        if self.status in ("open", "refunding") and self.resolution:
            return self.resolution
        return self.status


@dataclass
class EfwQueue:
    rows: list[EfwRow]
    total: int
    open_count: int  # open AND still actionable by us: the charge is neither disputed nor fully refunded
    actionable_open_count: int
    at_risk: dict[str, int] = field(default_factory=dict)  # currency -> minor units still refundable
    resolved_by_refund: int = 0  # open in our DB, but the charge is already fully refunded
    disputed: int = 0  # open in our DB, but the charge is disputed (answer the dispute instead)


def list_queue(uow: UnitOfWork, flt: EfwFilter, *, now: datetime | None = None) -> EfwQueue:
    """Open and actionable first, oldest first; filtering and paging in SQL."""
    moment = now or utcnow()
    where = efw_repo.queue_filter(
        statuses=flt.statuses, fraud_types=flt.fraud_types, actionable=flt.actionable,
        created_since=moment - timedelta(days=flt.max_age_days) if flt.max_age_days is not None else None)
    with uow:
        rows = [_row(*found) for found in efw_repo.queue_page(uow, where, limit=flt.limit, offset=flt.offset)]
        total = efw_repo.count(uow, where)
        open_rows = efw_repo.open_tiles(uow, where)  # the tiles follow the page's filters
    at_risk: dict[str, int] = {}
    open_count = actionable = refunded = disputed = 0
    for charge_state, is_actionable, currency, n, amount in open_rows:
        if charge_state == "disputed":
            disputed += int(n)
            continue
        if charge_state == "refunded":
            refunded += int(n)
            continue
        open_count += int(n)
        if is_actionable:
            actionable += int(n)
            at_risk[currency] = at_risk.get(currency, 0) + int(amount or 0)
    return EfwQueue(rows, total, open_count, actionable, at_risk, refunded, disputed)


def _row(efw: FraudWarning, refunded: int | None, dispute_id: str | None, dispute_status: str | None) -> EfwRow:
    return EfwRow(
        id=efw.id, created=efw.created, charge_id=efw.charge_id, customer_email=efw.customer_email,
        amount=efw.amount, amount_refunded=int(refunded or 0), currency=efw.currency, fraud_type=efw.fraud_type,
        actionable=efw.actionable, status=efw.status, actor=efw.actor, decided_at=efw.decided_at,
        reason=efw.reason, refund_id=efw.refund_id, dispute_id=dispute_id, dispute_status=dispute_status,
    )


def get_fraud_warning(uow: UnitOfWork, efw_id: str) -> EfwRow | None:
    with uow:
        found = efw_repo.one(uow, efw_id)
    return _row(*found) if found else None


def fraud_types(uow: UnitOfWork) -> list[str]:
    with uow:
        return efw_repo.fraud_types(uow)


# --- refund history ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefundHistoryRow:
    id: str
    created: datetime | None
    amount: int
    currency: str
    reason: str | None
    status: str | None  # Stripe's: pending | requires_action | succeeded | failed | canceled
    failure_reason: str | None
    requested_by: str | None  # the console user, or None when sent elsewhere (Dashboard, API)

    @property
    def shown_status(self) -> str:
        return self.status or "unknown"


def refund_history(uow: UnitOfWork, charge_id: str) -> list[RefundHistoryRow]:
    """Every refund on the charge, newest first, with the status refund.* events last reported."""
    with uow:
        rows = history.refunds_of_charge(uow, charge_id)
    return [RefundHistoryRow(r.id, r.created, r.amount, r.currency, r.reason, r.status, r.failure_reason,
                             r.requested_by) for r in rows]
