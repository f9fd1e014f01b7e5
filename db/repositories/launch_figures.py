"""The billing-DB reads behind the launch figures (services/launch_figures.py): subscriptions
started or due a downgrade in a window, the plan-change errors in the audit log and their
resolutions, and the customers' emails to list them with."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import select

from db.models import AuditLog, ChangeErrorResolution, Customer, UserSubscription
from db.session import UnitOfWork


def customer_emails(uow: UnitOfWork, customer_ids: Collection[str]) -> dict[str, str | None]:
    if not customer_ids:
        return {}
    rows = uow.session.execute(select(Customer.id, Customer.email).where(Customer.id.in_(list(customer_ids)))).all()
    return {cid: email for cid, email in rows}


def subscriptions_started(uow: UnitOfWork, *, start: datetime, end: datetime) -> list[UserSubscription]:
    return list(uow.session.execute(select(UserSubscription).where(
        UserSubscription.started_at >= start, UserSubscription.started_at < end)).scalars())


def pending_plan_due(uow: UnitOfWork, *, start: datetime, until: datetime) -> list[UserSubscription]:
    """Subscriptions whose period ended in [start, until) with their pending plan still set."""
    return list(uow.session.execute(select(UserSubscription).where(
        UserSubscription.pending_plan.is_not(None), UserSubscription.current_period_end >= start,
        UserSubscription.current_period_end < until).order_by(UserSubscription.current_period_end)).scalars())


def subscriptions_by_id(uow: UnitOfWork, subscription_ids: Collection[str]) -> dict[str, UserSubscription]:
    if not subscription_ids:
        return {}
    return {s.stripe_subscription_id: s for s in uow.session.execute(select(UserSubscription).where(
        UserSubscription.stripe_subscription_id.in_(list(subscription_ids)))).scalars()}


def audited_errors(uow: UnitOfWork, actions: Sequence[str], *, start: datetime, end: datetime) -> list[AuditLog]:
    """Audit rows with result `error` of these actions in [start, end), newest first."""
    return list(uow.session.execute(select(AuditLog).where(
        AuditLog.action.in_(list(actions)), AuditLog.result == "error", AuditLog.at >= start,
        AuditLog.at < end).order_by(AuditLog.at.desc(), AuditLog.id.desc())).scalars())


def audit_row(uow: UnitOfWork, audit_id: int) -> AuditLog | None:
    return uow.session.get(AuditLog, audit_id)


def resolutions(uow: UnitOfWork, audit_ids: Collection[int]) -> dict[int, ChangeErrorResolution]:
    if not audit_ids:
        return {}
    return {r.audit_id: r for r in uow.session.execute(select(ChangeErrorResolution).where(
        ChangeErrorResolution.audit_id.in_(list(audit_ids)))).scalars()}


def add_resolution(uow: UnitOfWork, resolution: ChangeErrorResolution) -> None:
    uow.session.add(resolution)
