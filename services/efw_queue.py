"""Early fraud warnings, the reads: the queue (filtering and paging in SQL, open and
actionable first), one warning with its refunded amount and dispute, and a charge's refund
history. services/fraud_warnings.py (the decisions) re-exports these names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, select

from db.models import Charge, Dispute, FraudWarning, Refund
from db.models.base import utcnow
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


def dispute_on_charge() -> Any:
    return (
        select(Dispute.id, Dispute.status, Dispute.charge_id)
        .order_by(Dispute.created.desc())
        .subquery()
    )


def list_queue(uow: UnitOfWork, flt: EfwFilter, *, now: datetime | None = None) -> EfwQueue:
    """Open and actionable first, oldest first; filtering and paging in SQL."""
    moment = now or utcnow()
    disputes = dispute_on_charge()
    with uow:
        conditions: list[ColumnElement[bool]] = []
        if flt.statuses:
            conditions.append(FraudWarning.status.in_(flt.statuses))
        if flt.fraud_types:
            conditions.append(FraudWarning.fraud_type.in_(flt.fraud_types))
        if flt.actionable is not None:
            conditions.append(FraudWarning.actionable.is_(flt.actionable))
        if flt.max_age_days is not None:
            conditions.append(FraudWarning.created >= moment - timedelta(days=flt.max_age_days))
        where = and_(*conditions) if conditions else and_(True)
        query = (
            select(FraudWarning, Charge.amount_refunded, disputes.c.id, disputes.c.status)
            .outerjoin(Charge, Charge.id == FraudWarning.charge_id)
            .outerjoin(disputes, disputes.c.charge_id == FraudWarning.charge_id)
            .where(where)
            .order_by(
                case((FraudWarning.status == "open", 0), else_=1),
                case((and_(FraudWarning.actionable.is_(True), disputes.c.id.is_(None),
                           func.coalesce(Charge.amount_refunded, 0) < FraudWarning.amount), 0), else_=1),
                FraudWarning.created.asc(),
            )
        )
        total = uow.session.execute(select(func.count()).select_from(FraudWarning).where(where)).scalar() or 0
        seen: set[str] = set()
        rows: list[EfwRow] = []
        for efw, refunded, dispute_id, dispute_status in uow.session.execute(
            query.limit(flt.limit * 2).offset(flt.offset)
        ):
            if efw.id in seen:  # several disputes on one charge: show the newest once
                continue
            seen.add(efw.id)
            rows.append(_row(efw, refunded, dispute_id, dispute_status))
            if len(rows) >= flt.limit:
                break
        disputed_charge = exists().where(Dispute.charge_id == FraudWarning.charge_id)
        state = case(
            (disputed_charge, "disputed"),
            (func.coalesce(Charge.amount_refunded, 0) >= FraudWarning.amount, "refunded"),
            else_="open",
        )
        per_warning = (
            select(state.label("state"), FraudWarning.actionable.label("actionable"),
                   FraudWarning.currency.label("currency"),
                   (FraudWarning.amount - func.coalesce(Charge.amount_refunded, 0)).label("remaining"))
            .outerjoin(Charge, Charge.id == FraudWarning.charge_id)
            .where(FraudWarning.status == "open", where)  # the tiles follow the page's filters
            .subquery()
        )
        open_rows = uow.session.execute(
            select(per_warning.c.state, per_warning.c.actionable, per_warning.c.currency, func.count(),
                   func.sum(per_warning.c.remaining))
            .group_by(per_warning.c.state, per_warning.c.actionable, per_warning.c.currency)
        ).all()
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
    return EfwQueue(rows, int(total), open_count, actionable, at_risk, refunded, disputed)


def _row(efw: FraudWarning, refunded: int | None, dispute_id: str | None, dispute_status: str | None) -> EfwRow:
    return EfwRow(
        id=efw.id, created=efw.created, charge_id=efw.charge_id, customer_email=efw.customer_email,
        amount=efw.amount, amount_refunded=int(refunded or 0), currency=efw.currency, fraud_type=efw.fraud_type,
        actionable=efw.actionable, status=efw.status, actor=efw.actor, decided_at=efw.decided_at,
        reason=efw.reason, refund_id=efw.refund_id, dispute_id=dispute_id, dispute_status=dispute_status,
    )


def get_fraud_warning(uow: UnitOfWork, efw_id: str) -> EfwRow | None:
    disputes = dispute_on_charge()
    with uow:
        found = uow.session.execute(
            select(FraudWarning, Charge.amount_refunded, disputes.c.id, disputes.c.status)
            .outerjoin(Charge, Charge.id == FraudWarning.charge_id)
            .outerjoin(disputes, disputes.c.charge_id == FraudWarning.charge_id)
            .where(FraudWarning.id == efw_id)
            .limit(1)
        ).first()
    return _row(*found) if found else None


def fraud_types(uow: UnitOfWork) -> list[str]:
    with uow:
        return [t for t in uow.session.execute(
            select(FraudWarning.fraud_type).distinct().order_by(FraudWarning.fraud_type)).scalars() if t]



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
        rows = uow.session.execute(
            select(Refund).where(Refund.charge_id == charge_id).order_by(Refund.created.desc(), Refund.id)
        ).scalars().all()
    return [RefundHistoryRow(r.id, r.created, r.amount, r.currency, r.reason, r.status, r.failure_reason,
                             r.requested_by) for r in rows]


