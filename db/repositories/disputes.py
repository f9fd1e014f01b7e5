"""Disputes: the queue's rows and tiles, one dispute, its evidence draft and kept files, the
submit/accept claims, and the counts the analytics and the dispute-rate chart read.

Every function takes the open UnitOfWork and never commits (the service owns the transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update

from db.models import AuditLog, Charge, Dispute, DisputeEvidenceDraft, DisputeEvidenceFile, StripeEvent
from db.repositories._days import counts_by_day
from db.session import UnitOfWork, rows_affected


# --- one dispute ---------------------------------------------------------------------------------
def get(uow: UnitOfWork, dispute_id: str) -> Dispute | None:
    return uow.session.get(Dispute, dispute_id)


def reasons(uow: UnitOfWork) -> list[str]:
    """The reasons the disputes table holds, for the queue's filter."""
    return [r for r in uow.session.execute(select(Dispute.reason).distinct().order_by(Dispute.reason)).scalars()
            if r]


# --- the queue -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueTiles:
    open_count: int
    overdue: int
    due_24h: int
    due_72h: int
    at_risk: dict[str, int]


def queue_filter(*, statuses: Sequence[str] = (), reasons: Sequence[str] = (), currency: str | None = None,
                 min_amount: int | None = None, max_amount: int | None = None,
                 email_contains: str | None = None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(Dispute.status.in_(statuses))
    if reasons:
        conditions.append(Dispute.reason.in_(reasons))
    if currency:
        conditions.append(Dispute.currency == currency.lower())
    if min_amount is not None:
        conditions.append(Dispute.amount >= min_amount)
    if max_amount is not None:
        conditions.append(Dispute.amount <= max_amount)
    if email_contains:
        conditions.append(Dispute.customer_email.ilike(f"%{email_contains.strip()}%"))
    return and_(*conditions) if conditions else and_(True)


def queue_page(uow: UnitOfWork, where: ColumnElement[bool], open_statuses: Sequence[str], *, limit: int,
               offset: int) -> list[Dispute]:
    """One page: open disputes by deadline first, then the rest by deadline."""
    is_open = Dispute.status.in_(open_statuses)
    return list(uow.session.execute(
        select(Dispute).where(where)
        .order_by(case((is_open, 0), else_=1), Dispute.due_by.asc(), Dispute.id)
        .limit(limit).offset(offset)
    ).scalars())


def count(uow: UnitOfWork, where: ColumnElement[bool]) -> int:
    return int(uow.session.execute(select(func.count()).select_from(Dispute).where(where)).scalar() or 0)


def queue_tiles(uow: UnitOfWork, where: ColumnElement[bool], open_statuses: Sequence[str],
                now: datetime) -> QueueTiles:
    """The tiles over the open disputes that match the page's filters: one pass for the deadlines
    and one for the amounts at risk per currency."""
    is_open = Dispute.status.in_(open_statuses)
    in_24h, in_72h = now + timedelta(hours=24), now + timedelta(hours=72)
    rows = uow.session.execute(
        select(
            Dispute.currency,
            func.count(),
            func.sum(case((Dispute.due_by < now, 1), else_=0)),
            func.sum(case((and_(Dispute.due_by >= now, Dispute.due_by < in_24h), 1), else_=0)),
            func.sum(case((and_(Dispute.due_by >= now, Dispute.due_by < in_72h), 1), else_=0)),
            func.sum(Dispute.amount),
        ).where(is_open, where).group_by(Dispute.currency)
    ).all()
    return QueueTiles(sum(int(r[1] or 0) for r in rows), sum(int(r[2] or 0) for r in rows),
                      sum(int(r[3] or 0) for r in rows), sum(int(r[4] or 0) for r in rows),
                      {r[0]: int(r[5] or 0) for r in rows})


# --- a dispute's neighbours --------------------------------------------------------------------------
def of_customer(uow: UnitOfWork, customer_id: str, charge_ids: Iterable[str], *, excluding: str) -> list[Dispute]:
    """The customer's other disputes: on one of their charges or carrying their customer id."""
    return list(uow.session.execute(
        select(Dispute).where(Dispute.id != excluding, or_(
            Dispute.charge_id.in_(list(charge_ids)), Dispute.stripe_customer_id == customer_id))
        .order_by(Dispute.created, Dispute.id)).scalars())


def on_charges(uow: UnitOfWork, charge_ids: Iterable[str]) -> list[Dispute]:
    ids = list(charge_ids)
    if not ids:
        return []
    return list(uow.session.execute(
        select(Dispute).where(Dispute.charge_id.in_(ids)).order_by(Dispute.created, Dispute.id)).scalars())


def disputed_charge_ids(uow: UnitOfWork, charge_ids: Iterable[str]) -> set[str]:
    """Which of these charges have a dispute."""
    ids = list(charge_ids)
    if not ids:
        return set()
    return {c for c in uow.session.execute(select(Dispute.charge_id).where(Dispute.charge_id.in_(ids))).scalars()
            if c}


def created_between(uow: UnitOfWork, since: datetime, until: datetime | None = None) -> list[Dispute]:
    query = select(Dispute).where(Dispute.created >= since)
    if until is not None:
        query = query.where(Dispute.created < until)
    return list(uow.session.execute(query).scalars())


def count_created_between(uow: UnitOfWork, since: datetime, until: datetime) -> int:
    return int(uow.session.execute(select(func.count()).select_from(Dispute).where(
        Dispute.created >= since, Dispute.created < until)).scalar() or 0)


def created_by_day(uow: UnitOfWork, *, now: datetime, since: datetime) -> dict[int, int]:
    """Disputes opened per whole day before `now` (see db/repositories/_days.py)."""
    return counts_by_day(uow, Dispute.created, now=now, since=since)


def chargebacks_by_network(uow: UnitOfWork, since: datetime, until: datetime) -> dict[str, int]:
    """Disputes opened in [since, until) per card network, lowercase, inquiries (`warning_*`) left out:
    the network Stripe names on the dispute, else its card brand, else the charge's brand, else
    "unknown" (`services/compelling_evidence.network_of` reads the same fields)."""
    def named(value: Any) -> Any:
        return func.nullif(func.lower(value), "")

    network = func.coalesce(
        named(Dispute.raw[("payment_method_details", "card", "network")].as_string()),
        named(Dispute.raw[("payment_method_details", "card", "brand")].as_string()),
        named(Charge.card_brand), "unknown")
    rows = uow.session.execute(
        select(network, func.count()).select_from(Dispute).outerjoin(Charge, Charge.id == Dispute.charge_id)
        .where(Dispute.created >= since, Dispute.created < until,
               ~Dispute.status.startswith("warning_", autoescape=True))
        .group_by(network)).all()
    return {str(n): int(c) for n, c in rows}


# --- the evidence draft and kept files --------------------------------------------------------------
def draft(uow: UnitOfWork, dispute_id: str) -> DisputeEvidenceDraft | None:
    return uow.session.execute(select(DisputeEvidenceDraft).where(
        DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()


def draft_or_new(uow: UnitOfWork, dispute_id: str) -> DisputeEvidenceDraft:
    """The dispute's draft, added (empty) to the unit when it has none yet."""
    found = draft(uow, dispute_id)
    if found is None:
        found = DisputeEvidenceDraft(dispute_id=dispute_id, fields={}, files={})
        uow.session.add(found)
    return found


def has_file_copy(uow: UnitOfWork, stripe_file_id: str) -> bool:
    return uow.session.execute(select(DisputeEvidenceFile.id).where(
        DisputeEvidenceFile.stripe_file_id == stripe_file_id)).first() is not None


def add_file_copy(uow: UnitOfWork, copy: DisputeEvidenceFile) -> None:
    uow.session.add(copy)


def file_copies(uow: UnitOfWork, dispute_id: str) -> dict[str, DisputeEvidenceFile]:
    """The dispute's kept uploads by Stripe file id."""
    return {f.stripe_file_id: f for f in uow.session.execute(select(DisputeEvidenceFile).where(
        DisputeEvidenceFile.dispute_id == dispute_id)).scalars()}


# --- submit / accept claims -----------------------------------------------------------------------------
def claim_answer(uow: UnitOfWork, dispute_id: str, values: dict[str, Any]) -> bool:
    """Mark the dispute submitted or accepted (`values`) unless either already happened: one
    conditional UPDATE, so of two clicks only one wins."""
    return bool(rows_affected(uow.session.execute(
        update(Dispute).where(Dispute.id == dispute_id, Dispute.submitted_at.is_(None),
                              Dispute.accepted_at.is_(None)).values(**values))))


def release_answer(uow: UnitOfWork, dispute_id: str, values: dict[str, Any]) -> None:
    """Undo a claim whose Stripe call failed (`values` clears what the claim set)."""
    uow.session.execute(update(Dispute).where(Dispute.id == dispute_id).values(**values))


# --- what Stripe told us and what we did -------------------------------------------------------------
def audit_rows(uow: UnitOfWork, dispute_id: str, actions: Iterable[str], *, newest_first: bool) -> list[AuditLog]:
    """The audit rows of these actions on the dispute."""
    order = AuditLog.id.desc() if newest_first else AuditLog.id
    return list(uow.session.execute(
        select(AuditLog).where(AuditLog.target == dispute_id, AuditLog.action.in_(tuple(actions))).order_by(order)
    ).scalars())


def events(uow: UnitOfWork, dispute_id: str, types: Iterable[str]) -> list[StripeEvent]:
    """The dispute's stored events of these types, in Stripe's order."""
    return list(uow.session.execute(
        select(StripeEvent).where(StripeEvent.object_id == dispute_id, StripeEvent.type.in_(tuple(types)))
        .order_by(StripeEvent.created, StripeEvent.id)).scalars())
