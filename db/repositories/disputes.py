"""Disputes: the queue's rows and tiles, one dispute, its evidence draft and kept files, the
submit/accept claims, and the counts the analytics and the dispute-rate chart read.

Every function takes the open UnitOfWork and never commits (the service owns the transaction).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update

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


def queue_page(uow: UnitOfWork, where: ColumnElement[bool], statuses: Sequence[str],
               open_statuses: Sequence[str], *, limit: int, offset: int) -> list[Dispute]:
    """One page of the disputes matching `where` (and `statuses`, all when empty): open ones by
    deadline first, then the rest by deadline.

    Read as one ordered index range per status (status, due_by) merged here, so a page costs
    `offset + limit` rows per status rather than a sort of every matching dispute (an ORDER BY
    "is open" first can use no index)."""
    wanted_open = [s for s in (statuses or open_statuses) if s in open_statuses]
    first = _by_deadline(uow, where, wanted_open, offset + limit)
    if len(first) >= offset + limit:
        return first[offset:offset + limit]
    # Every open dispute is in `first`; the page goes on with the closed ones.
    page = first[offset:]
    skip, want = max(0, offset - len(first)), limit - len(page)
    if statuses:
        closed = [s for s in statuses if s not in open_statuses]
        return page + _by_deadline(uow, where, closed, skip + want)[skip:]
    rest = uow.session.execute(
        select(Dispute).where(where, Dispute.status.not_in(open_statuses))
        .order_by(Dispute.due_by.asc(), Dispute.id).limit(want).offset(skip)).scalars()
    return page + list(rest)


def _by_deadline(uow: UnitOfWork, where: ColumnElement[bool], statuses: Sequence[str], count: int) -> list[Dispute]:
    """The first `count` disputes of these statuses by (due_by, id), as the database orders them
    (SQLite puts a missing due_by first, PostgreSQL last)."""
    if not statuses or count <= 0:
        return []
    runs = [list(uow.session.execute(
        select(Dispute).where(where, Dispute.status == status)
        .order_by(Dispute.due_by.asc(), Dispute.id).limit(count)).scalars()) for status in statuses]
    if len(runs) == 1:
        return runs[0]
    nulls_first = uow.session.get_bind().dialect.name == "sqlite"

    def key(d: Dispute) -> tuple[bool, datetime, str]:
        missing = d.due_by is None
        return (not missing if nulls_first else missing), d.due_by or datetime.min.replace(tzinfo=UTC), d.id

    return list(heapq.merge(*runs, key=key))[:count]


def count(uow: UnitOfWork, where: ColumnElement[bool]) -> int:
    return int(uow.session.execute(select(func.count()).select_from(Dispute).where(where)).scalar() or 0)


def queue_tiles(uow: UnitOfWork, where: ColumnElement[bool], open_statuses: Sequence[str],
                now: datetime) -> QueueTiles:
    """The tiles over the open disputes that match the page's filters: one grouped pass for the
    count and the amounts at risk per currency, and the deadlines as three range counts along
    (status, due_by) (a CASE per row costs three times the pass on SQLite)."""
    is_open = Dispute.status.in_(open_statuses)
    in_24h, in_72h = now + timedelta(hours=24), now + timedelta(hours=72)
    rows = uow.session.execute(
        select(Dispute.currency, func.count(), func.sum(Dispute.amount)).where(is_open, where)
        .group_by(Dispute.currency)
    ).all()

    def due(*between: ColumnElement[bool]) -> Any:
        return select(func.count()).select_from(Dispute).where(is_open, where, *between).scalar_subquery()

    overdue, due_24h, due_72h = uow.session.execute(select(
        due(Dispute.due_by < now), due(Dispute.due_by >= now, Dispute.due_by < in_24h),
        due(Dispute.due_by >= now, Dispute.due_by < in_72h))).one()
    return QueueTiles(sum(int(r[1] or 0) for r in rows), int(overdue or 0), int(due_24h or 0), int(due_72h or 0),
                      {r[0]: int(r[2] or 0) for r in rows})


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


def created_by_day(uow: UnitOfWork, *, now: datetime, days: int) -> dict[int, int]:
    """Disputes opened per whole day before `now`, for `days` days (see db/repositories/_days.py)."""
    return counts_by_day(uow, Dispute.created, now=now, days=days)


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
