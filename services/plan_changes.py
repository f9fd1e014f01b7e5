"""Plan changes the runbook describes: preview, upgrade now, downgrade at period end.

The runbook's choices (go-live runbook sections 5-6):
- an upgrade is immediate and invoiced at once with proration
  (`proration_behavior=always_invoice`);
- a downgrade gives no mid-cycle credit: it is scheduled by setting
  `cancel_at_period_end=true` plus `metadata.pending_plan` (and
  `metadata.pending_interval`), and reconciliation swaps the price shortly
  before the period ends (services/reconciliation.py).

Prices are resolved only through the settings' plan mapping; an unknown plan
or interval is refused before anything is sent to Stripe. Every mutating call
carries an idempotency key derived from the intent and writes one audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from db.models import PlanChange
from db.models.base import utcnow
from db.repositories import customers as customer_rows
from db.repositories import plan_changes as plan_rows
from db.session import UnitOfWork
from services import audit
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError
from services.metric_points import (
    CHANGE_ERROR,
    DOWNGRADE_SCHEDULED,
    PLAN_CHANGED,
    SUBSCRIPTION_CHANGE,
    record_metric,
)
from services.money import format_money
from services.plan_change_queries import period_end_text
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.stripe_mapping import fresh_observed_at as stripe_fresh_observed_at
from services.stripe_mapping import upsert_subscription
from services.stripe_objects import first_item, item_price_id, subscription_period

# Upgrades are invoiced at once; scheduled downgrades never prorate (runbook section 5).
UPGRADE_PRORATION = "always_invoice"
DOWNGRADE_PRORATION = "none"
CHANGEABLE_STATUSES = frozenset({"active", "trialing", "past_due"})

# Audit action per change kind: the same names the privileged guards use.
AUDIT_ACTIONS = {
    "upgrade": "plan.upgrade",
    "downgrade_scheduled": "plan.schedule_downgrade",
    "downgrade_canceled": "plan.cancel_scheduled_downgrade",
    "cancel": "plan.cancel_at_period_end",
    "resume": "plan.resume",
}
_MONTHS_PER_INTERVAL = {"month": 1, "year": 12, "week": 12 / 52, "day": 12 / 365}


class PlanChangeError(ConsoleError):
    """A change was refused before reaching Stripe."""


@dataclass(frozen=True)
class ChangeResult:
    subscription_id: str
    kind: str
    from_plan: str | None
    to_plan: str | None
    idempotency_key: str
    cancel_at_period_end: bool
    pending_plan: str | None
    period_end: int | None


def resolve_price(settings: Settings, plan: str, interval: str) -> str:
    plan_name, interval_name = (plan or "").strip().lower(), (interval or "").strip().lower()
    price_id = settings.price_id(plan_name, interval_name) if plan_name and interval_name else None
    if price_id is None:
        known = ", ".join(
            f"{p} {i}" for p, intervals in sorted(settings.price_mapping.items()) for i in sorted(intervals)
        )
        raise PlanChangeError(
            f"Unknown plan or interval '{plan} {interval}'. Known: {known or 'none configured'}."
        )
    return price_id


def subscription_item(subscription: dict[str, Any]) -> dict[str, Any]:
    item = first_item(subscription)
    if item is None:
        raise PlanChangeError(f"Subscription {subscription.get('id')} has no items to change.")
    return item


def monthly_amount(price: dict[str, Any]) -> float:
    """A price's amount per month, to tell an upgrade from a downgrade across intervals."""
    recurring = price.get("recurring") or {}
    months = _MONTHS_PER_INTERVAL.get(recurring.get("interval") or "month", 1) * (
        recurring.get("interval_count") or 1
    )
    return float(price.get("unit_amount") or 0) / months


def record_plan_change(
    uow: UnitOfWork,
    subscription_id: str,
    *,
    kind: str,
    actor: str,
    from_plan: str | None,
    to_plan: str | None,
    details: dict[str, Any] | None = None,
) -> PlanChange:
    """One history row per change. `upsert_subscription` adds an "observed" row when
    the stored plan changes; when the change is ours, relabel that row instead."""
    pending = plan_rows.unflushed(uow, subscription_id, kind="observed")
    if pending is not None:
        pending.kind = kind
        pending.actor = actor
        pending.from_plan = from_plan
        pending.details = {**(pending.details or {}), **(details or {})}
        return pending
    change = PlanChange(
        stripe_subscription_id=subscription_id,
        from_plan=from_plan,
        to_plan=to_plan,
        kind=kind,
        at=utcnow(),
        actor=actor,
        details=details or {},
    )
    return plan_rows.add(uow, change)


def fresh_observed_at(uow: UnitOfWork, subscription_id: str) -> int:
    """`observed_at` for a subscription Stripe just returned to our own call (the rule is
    stripe_mapping.fresh_observed_at: newer than the stored state, even a test clock's)."""
    return stripe_fresh_observed_at(customer_rows.subscription(uow, subscription_id))


def _changes_so_far(uow: UnitOfWork, subscription_id: str, kinds: tuple[str, ...]) -> int:
    """How many such changes were made before: part of the idempotency key, so the
    same intent retried replays, while a later, separate request is a new one."""
    return plan_rows.count(uow, subscription_id, kinds)


def retrieve_by_id(gateway: StripeGateway, subscription_id: str) -> dict[str, Any]:
    subscription_id = (subscription_id or "").strip()
    if not subscription_id.startswith("sub_"):
        raise PlanChangeError("Enter a Stripe subscription id (it starts with sub_).")
    return gateway.retrieve_subscription(subscription_id)


def change_direction(gateway: StripeGateway, subscription: dict[str, Any], target_price_id: str) -> str:
    item = subscription_item(subscription)
    current = item.get("price") if isinstance(item.get("price"), dict) else None
    current_id = item_price_id(subscription)
    if current_id == target_price_id:
        return "same"
    if current is None and current_id:
        current = gateway.retrieve_price(current_id)
    target = gateway.retrieve_price(target_price_id)
    return "upgrade" if monthly_amount(target) > monthly_amount(current or {}) else "downgrade"


def _apply(
    *,
    kind: str,
    subscription: dict[str, Any],
    params: dict[str, Any],
    idempotency_key: str,
    actor: str,
    settings: Settings,
    uow: UnitOfWork,
    gateway: StripeGateway,
    metrics: tuple[str, ...],
    to_plan: str | None,
    details: dict[str, Any],
) -> ChangeResult:
    """Send one update to Stripe, then store the new state, history, metrics and
    one audit row in one transaction. A Stripe error is audited and re-raised."""
    subscription_id = subscription["id"]
    before_price = item_price_id(subscription)
    before = settings.plan_for_price(before_price) if before_price else None
    from_plan = before[0] if before else None
    try:
        updated = gateway.update_subscription(subscription_id, params, idempotency_key=idempotency_key)
    except StripeGatewayError as error:
        with uow:
            record_metric(uow, CHANGE_ERROR, tags={"kind": kind, "code": error.code or "unknown"})
            audit.record(
                uow, actor=actor, action=AUDIT_ACTIONS[kind], result="error", target=subscription_id,
                idempotency_key=idempotency_key, details=details, error=error.message,
            )
            uow.commit()
        raise
    with uow:
        upsert_subscription(uow, updated, observed_at=fresh_observed_at(uow, subscription_id), settings=settings)
        record_plan_change(
            uow, subscription_id, kind=kind, actor=actor, from_plan=from_plan, to_plan=to_plan,
            details={**details, "idempotency_key": idempotency_key},
        )
        for name in metrics:
            record_metric(
                uow, name, tags={"kind": kind, "to_plan": to_plan or ""}, dedupe_key=f"{idempotency_key}:{name}"
            )
        audit.record(
            uow, actor=actor, action=AUDIT_ACTIONS[kind], result="ok", target=subscription_id,
            idempotency_key=idempotency_key, details=details,
        )
        uow.commit()
    metadata = updated.get("metadata") or {}
    return ChangeResult(
        subscription_id=subscription_id,
        kind=kind,
        from_plan=from_plan,
        to_plan=to_plan,
        idempotency_key=idempotency_key,
        cancel_at_period_end=bool(updated.get("cancel_at_period_end")),
        pending_plan=metadata.get("pending_plan") or None,
        period_end=subscription_period(updated)[1],
    )


def _require_changeable(subscription: dict[str, Any]) -> None:
    status = subscription.get("status")
    if status not in CHANGEABLE_STATUSES:
        raise PlanChangeError(
            f"Subscription {subscription.get('id')} is {status}; only live subscriptions change plan."
        )


def _change_count(uow: UnitOfWork, subscription_id: str, kinds: tuple[str, ...]) -> int:
    with uow:
        return _changes_so_far(uow, subscription_id, kinds)


_WRONG_DIRECTION = {
    "upgrade": "This is not an upgrade (the new price is not higher); schedule a downgrade instead.",
    "downgrade": "This is not a downgrade (the new price is not lower); upgrade instead.",
}


def _changing_to(want: str, subscription_id: str, plan: str, interval: str, *, settings: Settings,
                 gateway: StripeGateway) -> tuple[str, dict[str, Any]]:
    """The target price and the subscription, refused unless the change is a `want` (upgrade or
    downgrade) of a subscription that can change."""
    target_price_id = resolve_price(settings, plan, interval)
    subscription = retrieve_by_id(gateway, subscription_id)
    _require_changeable(subscription)
    direction = change_direction(gateway, subscription, target_price_id)
    if direction != want:
        raise PlanChangeError(_WRONG_DIRECTION[want] if direction != "same"
                              else "The subscription is already on this price.")
    return target_price_id, subscription


@privileged("plan.upgrade")
def upgrade(
    subscription_id: str, plan: str, interval: str, *, actor: str, settings: Settings, uow: UnitOfWork,
    gateway: StripeGateway,
) -> ChangeResult:
    """Upgrade now: the item moves to the new price at once and Stripe invoices the proration
    immediately; a scheduled downgrade is dropped."""
    target_price_id, subscription = _changing_to("upgrade", subscription_id, plan, interval, settings=settings,
                                                 gateway=gateway)
    item = subscription_item(subscription)
    key = f"upgrade:{subscription['id']}:{item_price_id(subscription)}:{target_price_id}"
    params = {
        "items": [{"id": item["id"], "price": target_price_id}],
        "proration_behavior": UPGRADE_PRORATION,
        # An upgrade supersedes any scheduled downgrade.
        "cancel_at_period_end": False,
        "metadata": {"pending_plan": "", "pending_interval": "", "plan": plan.lower(), "interval": interval.lower()},
    }
    return _apply(
        kind="upgrade", subscription=subscription, params=params, idempotency_key=key, actor=actor,
        settings=settings, uow=uow, gateway=gateway, metrics=(SUBSCRIPTION_CHANGE, PLAN_CHANGED),
        to_plan=plan.lower(), details={"price": target_price_id, "interval": interval.lower(),
                                       "proration_behavior": UPGRADE_PRORATION},
    )


@privileged("plan.schedule_downgrade")
def schedule_downgrade(
    subscription_id: str, plan: str, interval: str, *, actor: str, settings: Settings, uow: UnitOfWork,
    gateway: StripeGateway,
) -> ChangeResult:
    """Downgrade at the period end, without a credit: `cancel_at_period_end` and the pending plan in
    the metadata now; reconciliation swaps the price shortly before the period ends."""
    target_price_id, subscription = _changing_to("downgrade", subscription_id, plan, interval, settings=settings,
                                                 gateway=gateway)
    period_end = subscription_period(subscription)[1]
    count = _change_count(uow, subscription["id"], ("downgrade_scheduled",))
    key = f"schedule-downgrade:{subscription['id']}:{plan.lower()}:{interval.lower()}:{period_end}:{count}"
    params = {
        "cancel_at_period_end": True,
        "metadata": {"pending_plan": plan.lower(), "pending_interval": interval.lower()},
    }
    return _apply(
        kind="downgrade_scheduled", subscription=subscription, params=params, idempotency_key=key, actor=actor,
        settings=settings, uow=uow, gateway=gateway, metrics=(SUBSCRIPTION_CHANGE, DOWNGRADE_SCHEDULED),
        to_plan=plan.lower(), details={"pending_plan": plan.lower(), "pending_interval": interval.lower(),
                                       "period_end": period_end},
    )


def _clear_schedule(
    kind: str, subscription_id: str, *, cancel: bool, actor: str, settings: Settings, uow: UnitOfWork,
    gateway: StripeGateway,
) -> ChangeResult:
    subscription = retrieve_by_id(gateway, subscription_id)
    _check_schedule_change(kind, subscription)
    metadata = subscription.get("metadata") or {}
    period_end = subscription_period(subscription)[1]
    count = _change_count(uow, subscription["id"], (kind,))
    key = f"{kind.replace('_', '-')}:{subscription['id']}:{period_end}:{count}"
    # Stripe removes a metadata key that is set to an empty string.
    params = {"cancel_at_period_end": cancel, "metadata": {"pending_plan": "", "pending_interval": ""}}
    price_id = item_price_id(subscription)
    current = settings.plan_for_price(price_id) if price_id else None
    return _apply(
        kind=kind, subscription=subscription, params=params, idempotency_key=key, actor=actor, settings=settings,
        uow=uow, gateway=gateway, metrics=(SUBSCRIPTION_CHANGE,), to_plan=current[0] if current else None,
        details={"period_end": period_end, "cleared_pending_plan": metadata.get("pending_plan")},
    )


SCHEDULE_KINDS = ("downgrade_canceled", "cancel", "resume")


@dataclass(frozen=True)
class ScheduleConfirmation:
    """What a cancel / resume / cancel-the-downgrade will do, for the confirmation a
    person reads before anything is sent to Stripe. Customer text is plain text."""

    kind: str
    subscription_id: str
    customer_id: str
    customer_name: str | None
    customer_email: str | None
    plan: str | None
    interval: str | None
    amount: int | None
    currency: str | None
    pending_plan: str | None
    period_end: int | None
    mode: str

    @property
    def customer(self) -> str:
        parts = [p for p in (self.customer_name, f"<{self.customer_email}>" if self.customer_email else None) if p]
        return f"{' '.join(parts) or 'unknown customer'} ({self.customer_id})"

    @property
    def amount_text(self) -> str:
        if self.amount is None or not self.currency:
            return "an unknown amount"
        per = {"monthly": "month", "yearly": "year"}.get(self.interval or "", "period")
        return f"{format_money(self.amount, self.currency)} per {per}"

    @property
    def what(self) -> str:
        when = period_end_text(self.period_end)
        plan = f"{self.plan or 'its current plan'} {self.interval or ''}".strip()
        if self.kind == "cancel":
            return (f"Cancel {self.subscription_id} at the period end ({when}): the customer stops paying "
                    f"{self.amount_text} ({plan}) and loses access then."
                    + (f" The scheduled downgrade to {self.pending_plan} is dropped." if self.pending_plan else ""))
        if self.kind == "resume":
            return (f"Resume {self.subscription_id}: it no longer ends at {when}; the customer keeps paying "
                    f"{self.amount_text} ({plan})."
                    + (f" The scheduled downgrade to {self.pending_plan} is dropped." if self.pending_plan else ""))
        return (f"Cancel the scheduled downgrade of {self.subscription_id} to {self.pending_plan}: it stays on "
                f"{plan} at {self.amount_text} after {when}.")


def _check_schedule_change(kind: str, subscription: dict[str, Any]) -> None:
    _require_changeable(subscription)
    metadata = subscription.get("metadata") or {}
    if kind == "downgrade_canceled" and not metadata.get("pending_plan"):
        raise PlanChangeError("This subscription has no scheduled downgrade.")
    if kind == "resume" and not subscription.get("cancel_at_period_end"):
        raise PlanChangeError("This subscription is not set to cancel; nothing to resume.")
    if kind == "cancel" and subscription.get("cancel_at_period_end") and not metadata.get("pending_plan"):
        raise PlanChangeError("This subscription is already set to cancel at period end.")


def describe_schedule_change(
    kind: str, subscription_id: str, *, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
) -> ScheduleConfirmation:
    """Read-only: the customer, amount and mode a confirmation names. Refuses (as the
    change itself would) before the dialog opens, so nothing is offered that cannot work."""
    if kind not in SCHEDULE_KINDS:
        raise PlanChangeError(f"Unknown change '{kind}'.")
    subscription = retrieve_by_id(gateway, subscription_id)
    _check_schedule_change(kind, subscription)
    customer_id = str(subscription.get("customer") or "")
    with uow:
        customer = customer_rows.customer(uow, customer_id)
        name, email = (customer.name, customer.email) if customer is not None else (None, None)
    price_id = item_price_id(subscription)
    mapped = settings.plan_for_price(price_id) if price_id else None
    item = subscription_item(subscription)
    price = item.get("price") if isinstance(item.get("price"), dict) else None
    if price is None and price_id:
        price = gateway.retrieve_price(price_id)
    amount = (price or {}).get("unit_amount")
    return ScheduleConfirmation(
        kind=kind, subscription_id=str(subscription["id"]), customer_id=customer_id, customer_name=name,
        customer_email=email, plan=mapped[0] if mapped else None, interval=mapped[1] if mapped else None,
        amount=int(amount) if amount is not None else None,
        currency=str((price or {}).get("currency") or "") or None,
        pending_plan=(subscription.get("metadata") or {}).get("pending_plan") or None,
        period_end=subscription_period(subscription)[1], mode=settings.stripe_mode,
    )


class ScheduleChange(Protocol):
    def __call__(
        self, subscription_id: str, *, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
    ) -> ChangeResult: ...


_SCHEDULE_CHANGE_NAMES = {"downgrade_canceled": "cancel_scheduled_downgrade", "cancel": "cancel_at_period_end",
                          "resume": "resume"}


def _schedule_change(kind: str) -> ScheduleChange:
    """The privileged service for one schedule change (audited as AUDIT_ACTIONS[kind])."""

    def change(
        subscription_id: str, *, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
    ) -> ChangeResult:
        return _clear_schedule(kind, subscription_id, cancel=kind == "cancel", actor=actor, settings=settings,
                               uow=uow, gateway=gateway)

    change.__name__ = change.__qualname__ = _SCHEDULE_CHANGE_NAMES[kind]
    return privileged(AUDIT_ACTIONS[kind])(change)


# One page button each: undo a scheduled downgrade, cancel at period end, undo a cancellation.
SCHEDULE_CHANGES: dict[str, ScheduleChange] = {kind: _schedule_change(kind) for kind in SCHEDULE_KINDS}
cancel_scheduled_downgrade = SCHEDULE_CHANGES["downgrade_canceled"]
cancel_at_period_end = SCHEDULE_CHANGES["cancel"]
resume = SCHEDULE_CHANGES["resume"]
