"""What the plan-changes page reads: subscriptions by id, customer or email, the pending
downgrades, a subscription's plan history, the plan choices and period-end wording."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.models import UserSubscription
from db.models.base import from_unix
from db.repositories import customers as customer_rows
from db.repositories import plan_changes as plan_rows
from db.session import UnitOfWork
from services.config import Settings


def customer_label(uow: UnitOfWork, customer_id: str) -> str:
    """`Name <email> (cus_…)` from the billing DB, for a confirmation (plain text, customer-controlled)."""
    with uow:
        customer = customer_rows.customer(uow, customer_id)
        parts = [p for p in ((customer.name, f"<{customer.email}>" if customer.email else None)
                             if customer is not None else ()) if p]
    return f"{' '.join(parts) or 'unknown customer'} ({customer_id or '?'})"


@dataclass(frozen=True)
class SubscriptionSummary:
    subscription_id: str
    customer_id: str
    email: str | None
    status: str
    plan: str | None
    interval: str | None
    cancel_at_period_end: bool
    pending_plan: str | None
    current_period_end: str | None


def _summaries(rows: list[tuple[UserSubscription, str | None]]) -> list[SubscriptionSummary]:
    return [
        SubscriptionSummary(
            subscription_id=sub.stripe_subscription_id,
            customer_id=sub.stripe_customer_id,
            email=email,
            status=sub.status,
            plan=sub.plan,
            interval=sub.interval,
            cancel_at_period_end=sub.cancel_at_period_end,
            pending_plan=sub.pending_plan,
            current_period_end=sub.current_period_end.isoformat(timespec="minutes") if sub.current_period_end else None,
        )
        for sub, email in rows
    ]


def find_subscriptions(uow: UnitOfWork, query: str, *, limit: int = 50) -> list[SubscriptionSummary]:
    """Look a customer up by email, customer id or subscription id (billing DB)."""
    term = (query or "").strip()
    if not term:
        return []
    with uow:
        return _summaries(plan_rows.find_subscriptions(uow, term, limit=limit))


def pending_downgrades(uow: UnitOfWork, *, limit: int = 200) -> list[SubscriptionSummary]:
    """Subscriptions with a scheduled downgrade, soonest period end first."""
    with uow:
        return _summaries(plan_rows.pending_downgrades(uow, limit=limit))


def plan_history(uow: UnitOfWork, subscription_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    with uow:
        rows = plan_rows.history(uow, subscription_id, limit=limit)
        return [
            {"at": row.at, "kind": row.kind, "from_plan": row.from_plan, "to_plan": row.to_plan, "actor": row.actor}
            for row in rows
        ]


def plan_choices(settings: Settings) -> dict[str, list[str]]:
    """plan -> intervals with a mapped price, for the page's selects."""
    return {plan: sorted(intervals) for plan, intervals in sorted(settings.price_mapping.items())}


def period_end_text(period_end: int | None) -> str:
    moment = from_unix(period_end)
    return moment.isoformat(timespec="minutes") if moment else "unknown"
