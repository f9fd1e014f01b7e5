"""Early fraud warnings: the queue's rows and tiles, one warning, the refund claim and the
conditional status moves of the decisions, the funnel's rows and the monthly counts.

Every function takes the open UnitOfWork and never commits (the service owns the transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update

from db.models import Charge, Dispute, FraudWarning
from db.session import UnitOfWork, rows_affected

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# (warning, the charge's amount refunded, the charge's dispute id and status)
WarningRow = tuple[FraudWarning, int | None, str | None, str | None]


def get(uow: UnitOfWork, efw_id: str) -> FraudWarning | None:
    return uow.session.get(FraudWarning, efw_id)


def on_charges(uow: UnitOfWork, charge_ids: Iterable[str]) -> list[FraudWarning]:
    ids = [i for i in charge_ids if i]
    if not ids:
        return []
    return list(uow.session.execute(select(FraudWarning).where(FraudWarning.charge_id.in_(ids))).scalars())


def warned_charge_ids(uow: UnitOfWork, charge_ids: Iterable[str]) -> set[str]:
    """Which of these charges have an early fraud warning."""
    ids = list(charge_ids)
    if not ids:
        return set()
    return set(uow.session.execute(select(FraudWarning.charge_id).where(FraudWarning.charge_id.in_(ids))).scalars())


def fraud_types(uow: UnitOfWork) -> list[str]:
    return [t for t in uow.session.execute(
        select(FraudWarning.fraud_type).distinct().order_by(FraudWarning.fraud_type)).scalars() if t]


# --- the queue -----------------------------------------------------------------------------------
def queue_filter(*, statuses: Sequence[str] = (), fraud_types: Sequence[str] = (), actionable: bool | None = None,
                 created_since: datetime | None = None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(FraudWarning.status.in_(statuses))
    if fraud_types:
        conditions.append(FraudWarning.fraud_type.in_(fraud_types))
    if actionable is not None:
        conditions.append(FraudWarning.actionable.is_(actionable))
    if created_since is not None:
        conditions.append(FraudWarning.created >= created_since)
    return and_(*conditions) if conditions else and_(True)


def _ours() -> ColumnElement[bool]:
    """Still ours to act on: Stripe marks it actionable, the charge is not disputed and not fully refunded
    (the charge's state as the database keeps it on the warning, migration 0011: read from the queue index)."""
    return and_(FraudWarning.actionable.is_(True), FraudWarning.charge_disputed.is_(False),
                FraudWarning.charge_amount_refunded < FraudWarning.amount)


def queue_page(uow: UnitOfWork, where: ColumnElement[bool], *, limit: int, offset: int) -> list[WarningRow]:
    """One page: open first, then actionable by us (not disputed, not fully refunded), oldest first;
    each warning with its charge's newest dispute.

    Read as four runs in that order (open and ours, open and not, then the others), each an
    ordered range by `created`, so a page costs `offset + limit` rows rather than a sort of every
    matching warning (an ORDER BY over the charge and its disputes can use no index)."""
    is_open, ours = FraudWarning.status == "open", _ours()
    need = offset + limit
    found: list[tuple[FraudWarning, int | None]] = []
    for run in (and_(is_open, ours), and_(is_open, ~ours), and_(~is_open, ours), and_(~is_open, ~ours)):
        if len(found) >= need:
            break
        found += [(efw, refunded) for efw, refunded in uow.session.execute(
            select(FraudWarning, Charge.amount_refunded).outerjoin(Charge, Charge.id == FraudWarning.charge_id)
            .where(where, run).order_by(FraudWarning.created.asc(), FraudWarning.id).limit(need - len(found)))]
    page = found[offset:need]
    newest = newest_disputes(uow, [efw.charge_id for efw, _ in page])
    return [(efw, refunded, *newest.get(efw.charge_id, (None, None))) for efw, refunded in page]


def newest_disputes(uow: UnitOfWork, charge_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{charge id: (its newest dispute's id, status)} for the charges that have one."""
    ids = list(set(charge_ids))
    if not ids:
        return {}
    newest: dict[str, tuple[str, str]] = {}
    for dispute_id, status, charge_id in uow.session.execute(
            select(Dispute.id, Dispute.status, Dispute.charge_id).where(Dispute.charge_id.in_(ids))
            .order_by(Dispute.created.desc(), Dispute.id.desc())):
        newest.setdefault(charge_id or "", (dispute_id, status))
    return newest


def count(uow: UnitOfWork, where: ColumnElement[bool]) -> int:
    return int(uow.session.execute(select(func.count()).select_from(FraudWarning).where(where)).scalar() or 0)


def _charge_state() -> Any:
    """What the warning's charge says (kept on the warning, migration 0011): disputed, fully
    refunded, or open; the queue's tiles and the funnel use the same rule."""
    return case(
        (FraudWarning.charge_disputed.is_(True), "disputed"),
        (FraudWarning.charge_amount_refunded >= FraudWarning.amount, "refunded"),
        else_="open",
    ).label("state")


def open_tiles(uow: UnitOfWork, where: ColumnElement[bool]) -> list[tuple[Any, ...]]:
    """Open warnings matching `where`, grouped: (charge state disputed | refunded | open, actionable,
    currency, count, amount still refundable). One grouped read of the queue index: the charge's
    state is kept on the warning (migration 0011), no charge or dispute is looked up."""
    state = _charge_state()
    return [tuple(r) for r in uow.session.execute(
        select(state, FraudWarning.actionable, FraudWarning.currency, func.count(),
               func.sum(FraudWarning.amount - FraudWarning.charge_amount_refunded))
        .where(FraudWarning.status == "open", where)
        .group_by(state, FraudWarning.actionable, FraudWarning.currency)
    ).all()]


def one(uow: UnitOfWork, efw_id: str) -> WarningRow | None:
    """One warning as a queue row."""
    found = uow.session.execute(
        select(FraudWarning, Charge.amount_refunded).outerjoin(Charge, Charge.id == FraudWarning.charge_id)
        .where(FraudWarning.id == efw_id)).first()
    if found is None:
        return None
    dispute_id, dispute_status = newest_disputes(uow, [found[0].charge_id]).get(found[0].charge_id, (None, None))
    return found[0], found[1], dispute_id, dispute_status


# --- decisions -------------------------------------------------------------------------------------
def claim_for_refund(uow: UnitOfWork, efw_id: str, *, now: datetime, stale_before: datetime) -> bool:
    """Open (or refunding since before `stale_before`: a request that died) -> refunding."""
    return bool(rows_affected(uow.session.execute(
        update(FraudWarning)
        .where(FraudWarning.id == efw_id,
               or_(FraudWarning.status == "open",
                   and_(FraudWarning.status == "refunding", FraudWarning.updated_at < stale_before)))
        .values(status="refunding", updated_at=now)
    )))


def move(uow: UnitOfWork, efw_id: str, *, from_status: str, values: dict[str, Any]) -> bool:
    """Set `values` on the warning if it is still `from_status` (one conditional UPDATE)."""
    return bool(rows_affected(uow.session.execute(
        update(FraudWarning).where(FraudWarning.id == efw_id, FraudWarning.status == from_status).values(**values)
    )))


def reopen_refunded_by(uow: UnitOfWork, refund_id: str, values: dict[str, Any]) -> bool:
    """The warning our refund `refund_id` marked refunded, moved back (`values`)."""
    return bool(rows_affected(uow.session.execute(
        update(FraudWarning).where(FraudWarning.refund_id == refund_id, FraudWarning.status == "refunded")
        .values(**values)
    )))


# --- the funnel and the counts ------------------------------------------------------------------------
def funnel_statuses(uow: UnitOfWork, since: datetime, until: datetime) -> dict[tuple[str, str], int]:
    """{(status, charge state): warnings created in [since, until)}, the charge state as the queue's
    tiles read it (disputed | refunded | open), counted in one grouped read."""
    state = _charge_state()
    return {(str(status), str(charge)): int(n) for status, charge, n in uow.session.execute(
        select(FraudWarning.status, state, func.count())
        .where(FraudWarning.created >= since, FraudWarning.created < until)
        .group_by(FraudWarning.status, state)).all()}


def funnel_decisions(uow: UnitOfWork, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """(created, decided_at) of the warnings created in [since, until) that were refunded or ignored."""
    return [(created, decided) for created, decided in uow.session.execute(
        select(FraudWarning.created, FraudWarning.decided_at)
        .where(FraudWarning.created >= since, FraudWarning.created < until,
               FraudWarning.status.in_(("refunded", "ignored")), FraudWarning.decided_at.is_not(None)))
        if created is not None and decided is not None]


def funnel_disputes(uow: UnitOfWork, since: datetime, until: datetime) -> list[tuple[Any, ...]]:
    """Of the warnings created in [since, until) whose charge has a dispute: (warning id, its currency,
    the newest dispute's status and amount). Only the disputed ones are read (a join, not a row per warning)."""
    rows = uow.session.execute(
        select(FraudWarning.id, FraudWarning.currency, Dispute.id, Dispute.status, Dispute.amount, Dispute.created)
        .join(Dispute, Dispute.charge_id == FraudWarning.charge_id)
        .where(FraudWarning.created >= since, FraudWarning.created < until)
    ).all()
    # A charge with several disputes joins once per dispute: keep the newest, by (created, id), a
    # dispute with a creation time before one without.
    best: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        kept = best.get(row[0])
        if kept is None or (row[5] is not None, row[5] or _EPOCH, row[2]) > (kept[5] is not None, kept[5] or _EPOCH,
                                                                              kept[2]):
            best[row[0]] = tuple(row)
    return [(efw_id, currency, status, amount) for efw_id, currency, _id, status, amount, _c in best.values()]


def count_created_between(uow: UnitOfWork, since: datetime, until: datetime) -> int:
    return int(uow.session.execute(select(func.count()).select_from(FraudWarning).where(
        FraudWarning.created >= since, FraudWarning.created < until)).scalar_one())


def by_card_brand(uow: UnitOfWork, since: datetime, until: datetime) -> dict[str, int]:
    """Warnings created in [since, until) per card brand of their charge (lowercase, else "unknown")."""
    brand = func.coalesce(func.nullif(func.lower(Charge.card_brand), ""), "unknown")
    return {str(b): int(n) for b, n in uow.session.execute(
        select(brand, func.count()).select_from(FraudWarning).join(Charge, Charge.id == FraudWarning.charge_id)
        .where(FraudWarning.created >= since, FraudWarning.created < until).group_by(brand)).all()}
