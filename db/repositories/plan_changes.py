"""Plan changes (`plan_changes`) and the subscriptions the plan-changes page lists."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, or_, select

from db.models import Customer, PlanChange, UserSubscription
from db.session import UnitOfWork


def unflushed(uow: UnitOfWork, subscription_id: str, *, kind: str) -> PlanChange | None:
    """A change of this kind for the subscription added in this transaction and not yet
    flushed (e.g. the "observed" row `upsert_subscription` just added)."""
    for pending in list(uow.session.new):
        if (isinstance(pending, PlanChange) and pending.stripe_subscription_id == subscription_id
                and pending.kind == kind):
            return pending
    return None


def add(uow: UnitOfWork, change: PlanChange) -> PlanChange:
    uow.session.add(change)
    return change


def count(uow: UnitOfWork, subscription_id: str, kinds: Iterable[str]) -> int:
    """How many changes of these kinds the subscription has."""
    found = uow.session.execute(
        select(func.count(PlanChange.id)).where(
            PlanChange.stripe_subscription_id == subscription_id, PlanChange.kind.in_(list(kinds))
        )
    ).scalar()
    return int(found or 0)


def history(uow: UnitOfWork, subscription_id: str, *, limit: int) -> list[PlanChange]:
    """Newest first."""
    return list(uow.session.execute(
        select(PlanChange)
        .where(PlanChange.stripe_subscription_id == subscription_id)
        .order_by(PlanChange.at.desc(), PlanChange.id.desc())
        .limit(limit)
    ).scalars())


def kinds(uow: UnitOfWork, subscription_id: str) -> list[str]:
    """The kinds of a subscription's changes, oldest first."""
    return list(uow.session.execute(select(PlanChange.kind).where(
        PlanChange.stripe_subscription_id == subscription_id).order_by(PlanChange.id)).scalars())


def find_subscriptions(uow: UnitOfWork, term: str, *, limit: int) -> list[tuple[UserSubscription, str | None]]:
    """(subscription, customer email) by subscription id, customer id or a part of the email."""
    statement = (
        select(UserSubscription, Customer.email)
        .outerjoin(Customer, Customer.id == UserSubscription.stripe_customer_id)
        .where(or_(UserSubscription.stripe_subscription_id == term, UserSubscription.stripe_customer_id == term,
                   Customer.email.ilike(f"%{term}%")))
        .order_by(UserSubscription.id.desc())
        .limit(limit)
    )
    return [(row[0], row[1]) for row in uow.session.execute(statement)]


def pending_downgrades(uow: UnitOfWork, *, limit: int) -> list[tuple[UserSubscription, str | None]]:
    """(subscription, customer email) with a scheduled downgrade, soonest period end first."""
    statement = (
        select(UserSubscription, Customer.email)
        .outerjoin(Customer, Customer.id == UserSubscription.stripe_customer_id)
        .where(UserSubscription.pending_plan.is_not(None))
        .order_by(UserSubscription.current_period_end)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in uow.session.execute(statement)]
