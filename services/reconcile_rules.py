"""Reconciliation rules (pure): what one subscription needs, a due downgrade and/or drift
findings, from its Stripe state and the billing DB's plan; the finding kinds and their words;
the configuration a run refuses to start without."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.models.base import utcnow
from services.config import Settings
from services.errors import ConsoleError
from services.plan_changes import (
    DOWNGRADE_PRORATION,
)
from services.stripe_objects import item_id, item_price_id, subscription_period

APPLY_DOWNGRADE = "apply_downgrade"
DRIFT_PENDING_WITHOUT_CANCEL = "drift_pending_without_cancel"
DRIFT_PENDING_PAST_PERIOD_END = "drift_pending_past_period_end"
DRIFT_PLAN_MISMATCH = "drift_plan_mismatch"
DRIFT_MISSING_IN_DB = "drift_missing_in_db"
DRIFT_UNKNOWN_PRICE = "drift_unknown_price"

# A subscription that ended (Stripe cancelled it) while its downgrade was still pending: not
# drift to patch but a lost customer (see services/lost_customers.py for what can be done).
LOST_CUSTOMER = "lost_customer"
DRIFT_KINDS = (
    LOST_CUSTOMER,
    DRIFT_PENDING_WITHOUT_CANCEL,
    DRIFT_PENDING_PAST_PERIOD_END,
    DRIFT_PLAN_MISMATCH,
    DRIFT_MISSING_IN_DB,
    DRIFT_UNKNOWN_PRICE,
)
DRIFT_DESCRIPTIONS = {
    LOST_CUSTOMER: "customer lost: downgrade not applied before period end",
    DRIFT_PENDING_WITHOUT_CANCEL: "pending_plan is set but cancel_at_period_end is false",
    DRIFT_PENDING_PAST_PERIOD_END: "pending_plan is still set after its period ended",
    DRIFT_PLAN_MISMATCH: "the billing DB's plan disagrees with Stripe's price",
    DRIFT_MISSING_IN_DB: "the subscription exists in Stripe but not in the billing DB",
    DRIFT_UNKNOWN_PRICE: "the subscription's price is not in the plan mapping",
}

# Statuses whose price can no longer change; a pending plan on them is only drift.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})


class ReconcileError(ConsoleError):
    """A reconciliation run or fix was refused or failed."""


class ReconcileRefused(ReconcileError):
    """The run did not start: preflight-blocking configuration is missing. Nothing is persisted
    but one audit row (result `refused`)."""


def configuration_blockers(settings: Settings) -> list[str]:
    """The preflight's blocking failures that need no Stripe call and that would make a run's
    findings false (e.g. a missing price mapping makes every subscription 'unknown price')."""
    from services.preflight_settings import check_required_plans, check_stripe_key

    return [f"{result.message} {result.fix}".strip()
            for result in (check_stripe_key(settings), check_required_plans(settings)) if result.blocking_failure]


@dataclass
class ActionReport:
    subscription_id: str
    kind: str
    result: str  # planned | applied | skipped | error | reported | fixed
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    idempotency_key: str | None = None
    action_id: int | None = None


@dataclass
class ReconcileReport:
    run_id: int
    mode: str  # dry-run | apply
    trigger: str
    actor: str
    started_at: datetime
    finished_at: datetime | None = None
    now: int = 0
    lookahead_seconds: int = 0
    examined: int = 0
    applied: int = 0
    planned: int = 0
    drift: int = 0
    errors: int = 0
    list_calls: int = 0
    error: str | None = None
    alert: str | None = None
    actions: list[ActionReport] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()


@dataclass
class DueDowngrade:
    subscription: dict[str, Any]
    key: str
    params: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]


def subscription_state(subscription: dict[str, Any], settings: Settings) -> dict[str, Any]:
    price_id = item_price_id(subscription)
    mapped = settings.plan_for_price(price_id) if price_id else None
    metadata = subscription.get("metadata") or {}
    return {
        "status": subscription.get("status"),
        "price": price_id,
        "plan": mapped[0] if mapped else None,
        "interval": mapped[1] if mapped else None,
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
        "pending_plan": metadata.get("pending_plan") or None,
        "pending_interval": metadata.get("pending_interval") or None,
        "current_period_end": subscription_period(subscription)[1],
    }


def downgrade_key(subscription_id: str, period_end: int) -> str:
    return f"downgrade:{subscription_id}:{period_end}"


def evaluate(
    subscription: dict[str, Any],
    db_row: tuple[str | None, str | None] | None,
    *,
    settings: Settings,
    now: int,
    lookahead_seconds: int,
) -> tuple[DueDowngrade | None, list[ActionReport]]:
    """What one subscription needs: a due downgrade and/or drift findings.
    `db_row` is (plan, interval) stored in the billing DB, or None if missing."""
    subscription_id = subscription["id"]
    state = subscription_state(subscription, settings)
    findings: list[ActionReport] = []
    due: DueDowngrade | None = None

    def finding(kind: str, **after: Any) -> None:
        findings.append(
            ActionReport(subscription_id, kind, "reported", before=state,
                         after={"problem": DRIFT_DESCRIPTIONS[kind], **after})
        )

    if db_row is None:
        finding(DRIFT_MISSING_IN_DB)
    if state["price"] and state["plan"] is None:
        finding(DRIFT_UNKNOWN_PRICE, price=state["price"])
    elif db_row is not None and state["plan"] is not None and tuple(db_row) != (state["plan"], state["interval"]):
        finding(DRIFT_PLAN_MISMATCH, db_plan=db_row[0], db_interval=db_row[1])

    pending_plan = state["pending_plan"]
    period_end = state["current_period_end"]
    if pending_plan:
        if state["status"] in ENDED_STATUSES:
            interval = state["pending_interval"] or state["interval"] or "monthly"
            finding(LOST_CUSTOMER, customer=str(subscription.get("customer") or ""),
                    ended_at=subscription.get("ended_at") or subscription.get("canceled_at") or period_end,
                    pending_plan=pending_plan, pending_interval=interval,
                    pending_price=settings.price_id(pending_plan, interval))
        elif not state["cancel_at_period_end"]:
            finding(DRIFT_PENDING_WITHOUT_CANCEL)
        elif period_end is None or period_end <= now:
            finding(DRIFT_PENDING_PAST_PERIOD_END)
        elif period_end - now <= lookahead_seconds:
            interval = state["pending_interval"] or state["interval"] or "monthly"
            target_price = settings.price_id(pending_plan, interval)
            subscription_item_id = item_id(subscription)
            key = downgrade_key(subscription_id, period_end)
            if target_price is None or subscription_item_id is None:
                findings.append(
                    ActionReport(
                        subscription_id, APPLY_DOWNGRADE, "error", before=state, idempotency_key=key,
                        error=f"pending plan '{pending_plan} {interval}' has no price in the plan mapping",
                    )
                )
            else:
                params = {
                    "items": [{"id": subscription_item_id, "price": target_price}],
                    "proration_behavior": DOWNGRADE_PRORATION,
                    "cancel_at_period_end": False,
                    # Stripe removes a metadata key set to an empty string.
                    "metadata": {"pending_plan": "", "pending_interval": ""},
                }
                after = {"price": target_price, "plan": pending_plan, "interval": interval,
                         "cancel_at_period_end": False, "pending_plan": None, "stripe_params": params}
                due = DueDowngrade(subscription, key, params, state, after)
    return due, findings
