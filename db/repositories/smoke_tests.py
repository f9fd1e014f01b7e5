"""The guided smoke test's rows (table `smoke_tests`) and the few rows around it it reads:
its audit attempts, the billing DB's copy of its subscription, the checklist item it ticks."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update

from db.models import AuditLog, ChecklistItem, SmokeTest, UserSubscription
from db.session import UnitOfWork, rows_affected


def get(uow: UnitOfWork, smoke_id: int) -> SmokeTest | None:
    return uow.session.get(SmokeTest, smoke_id)


def require(uow: UnitOfWork, smoke_id: int) -> SmokeTest:
    """A run the caller read moments ago in this process (never deleted)."""
    row = uow.session.get(SmokeTest, smoke_id)
    assert row is not None, f"smoke test {smoke_id} vanished"
    return row


def add(uow: UnitOfWork, row: SmokeTest) -> int:
    """Insert a run and return its id (flushed, not committed)."""
    uow.session.add(row)
    uow.session.flush()
    return row.id


def newest(uow: UnitOfWork, *, statuses: Sequence[str] | None = None, paid: bool = False) -> SmokeTest | None:
    """The newest run, optionally only among `statuses` and only ones that were paid."""
    query = select(SmokeTest)
    if statuses is not None:
        query = query.where(SmokeTest.status.in_(list(statuses)))
    if paid:
        query = query.where(SmokeTest.completed_at.is_not(None))
    return uow.session.execute(query.order_by(SmokeTest.id.desc()).limit(1)).scalar_one_or_none()


def with_status(uow: UnitOfWork, statuses: Sequence[str]) -> list[SmokeTest]:
    return list(uow.session.execute(select(SmokeTest).where(SmokeTest.status.in_(list(statuses)))).scalars())


def by_checkout_session(uow: UnitOfWork, session_id: str | None) -> SmokeTest | None:
    return uow.session.execute(
        select(SmokeTest).where(SmokeTest.checkout_session_id == session_id)).scalar_one_or_none()


def claim(uow: UnitOfWork, smoke_id: int, *, statuses: Sequence[str], to: str) -> bool:
    """Move a paid run from one of `statuses` to `to` in one conditional UPDATE: of two
    concurrent callers exactly one gets True."""
    claimed = uow.session.execute(
        update(SmokeTest).where(SmokeTest.id == smoke_id, SmokeTest.status.in_(list(statuses)),
                                SmokeTest.completed_at.is_not(None)).values(status=to))
    return bool(rows_affected(claimed))


def audited_attempts(uow: UnitOfWork, action: str, smoke_id: int, *, results: Sequence[str] | None = None) -> int:
    """How many times `action` was audited on the run (optionally only with these results)."""
    query = select(func.count(AuditLog.id)).where(AuditLog.action == action,
                                                  AuditLog.target == f"smoke_test:{smoke_id}")
    if results is not None:
        query = query.where(AuditLog.result.in_(list(results)))
    return int(uow.session.execute(query).scalar() or 0)


def stored_subscription(uow: UnitOfWork, subscription_id: str | None) -> UserSubscription | None:
    """The billing DB's row for a Stripe subscription id."""
    return uow.session.execute(select(UserSubscription).where(
        UserSubscription.stripe_subscription_id == subscription_id)).scalar_one_or_none()


def checklist_item(uow: UnitOfWork, key: str) -> ChecklistItem | None:
    return uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == key)).scalar_one_or_none()


def add_checklist_item(uow: UnitOfWork, item: ChecklistItem) -> None:
    uow.session.add(item)
