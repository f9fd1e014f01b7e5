"""The reconciliation page's actions: a dry run now, applying the fix for one reported drift
finding after the admin confirmed it, dismissing a finding with a reason. Admins only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.models.base import utcnow
from db.repositories import reconciliation as reconcile_rows
from db.session import UnitOfWork
from services import audit
from services import reconcile_rules as rules
from services.audit import privileged
from services.config import Settings
from services.metric_points import CHANGE_ERROR, record_metric
from services.plan_changes import (
    DOWNGRADE_PRORATION,
    fresh_observed_at,
    record_plan_change,
)
from services.reconcile_rules import ReconcileError, ReconcileReport, subscription_state
from services.reconcile_run import run_reconciliation
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.stripe_mapping import upsert_subscription
from services.stripe_objects import item_id


@privileged("reconcile.dry_run")
def run_now_dry_run(*, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway) -> ReconcileReport:
    return run_reconciliation(settings=settings, uow=uow, gateway=gateway, apply=False, actor=actor, trigger="page")


def _fix_params(kind: str, subscription: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """The Stripe update that fixes a drift kind, or None when the fix is DB-only."""
    if kind == rules.DRIFT_PENDING_WITHOUT_CANCEL:
        # cancel_at_period_end was unset (e.g. resumed in the portal): the customer
        # stays; the leftover pending_plan is removed so nothing downgrades later.
        return {"metadata": {"pending_plan": "", "pending_interval": ""}}
    if kind == rules.DRIFT_PENDING_PAST_PERIOD_END:
        state = subscription_state(subscription, settings)
        interval = state["pending_interval"] or state["interval"] or "monthly"
        price = settings.price_id(state["pending_plan"] or "", interval)
        subscription_item_id = item_id(subscription)
        if price is None or subscription_item_id is None:
            raise ReconcileError("The pending plan has no price in the plan mapping; fix the mapping first.")
        return {
            "items": [{"id": subscription_item_id, "price": price}],
            "proration_behavior": DOWNGRADE_PRORATION,
            "cancel_at_period_end": False,
            "metadata": {"pending_plan": "", "pending_interval": ""},
        }
    return None


@dataclass(frozen=True)
class FixResult:
    action_id: int
    subscription_id: str
    kind: str
    result: str
    description: str


def describe_fix(kind: str) -> str:
    return {
        rules.DRIFT_PENDING_WITHOUT_CANCEL:
            "Stripe: remove metadata.pending_plan (the subscription stays on its plan).",
        rules.DRIFT_PENDING_PAST_PERIOD_END: (
            "Stripe: switch the item to the pending plan's price now (no proration), "
            "set cancel_at_period_end=false and remove pending_plan."
        ),
        rules.DRIFT_PLAN_MISMATCH: "Billing DB: reload the subscription from Stripe (Stripe is the source of truth).",
        rules.DRIFT_MISSING_IN_DB: "Billing DB: import the subscription from Stripe.",
        rules.DRIFT_UNKNOWN_PRICE:
            "No automatic fix: add the price to the plan mapping (STRIPE_PRICE_<PLAN>_<INTERVAL>).",
        rules.LOST_CUSTOMER: "No downgrade can be applied to an ended subscription: re-subscribe the customer on "
                             "the pending plan, or mark it handled with a reason (Lost customers).",
    }.get(kind, "No fix for this kind.")


ENDED_REFUSAL = (
    "The subscription has ended in Stripe, so a downgrade can no longer be applied to it. The customer is lost: "
    "re-subscribe them on the pending plan, or mark it handled with a reason (Lost customers)."
)


@privileged("reconcile.fix_drift")
def apply_drift_fix(
    action_id: int, *, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
) -> FixResult:
    """Fix one reported drift finding, after the admin confirmed it on the page."""
    with uow:
        action = reconcile_rows.action(uow, action_id)
        if action is None or action.kind not in rules.DRIFT_KINDS:
            raise ReconcileError("No such drift finding.")
        if action.result in ("fixed", "dismissed"):
            raise ReconcileError(f"This finding was already {action.result}.")
        kind, subscription_id = action.kind, action.stripe_subscription_id
    key = f"drift-fix:{kind}:{subscription_id}:{action_id}"

    def refuse(message: str) -> ReconcileError:
        # Refused before any change reaches Stripe: audited, and not a plan-change error
        # (no CHANGE_ERROR point, so the plan-change alert does not fire for it).
        with uow:
            audit.record(uow, actor=actor, action="reconcile.fix_drift", result="refused", target=subscription_id,
                         idempotency_key=key, details={"kind": kind, "action_id": action_id}, error=message)
            uow.commit()
        return ReconcileError(message)

    if not has_working_fix(kind):
        raise refuse(describe_fix(kind))
    try:
        subscription = gateway.retrieve_subscription(subscription_id)
        if kind in (rules.DRIFT_PENDING_WITHOUT_CANCEL, rules.DRIFT_PENDING_PAST_PERIOD_END):
            if subscription.get("status") in rules.ENDED_STATUSES:
                raise refuse(ENDED_REFUSAL)
            if not (subscription.get("metadata") or {}).get("pending_plan"):
                raise refuse("This drift is gone already (pending_plan is no longer set); run again.")
        try:
            params = _fix_params(kind, subscription, settings)
        except ReconcileError as error:
            raise refuse(error.message) from None
        if params is not None:
            subscription = gateway.update_subscription(subscription_id, params, idempotency_key=key)
    except StripeGatewayError as error:
        with uow:
            record_metric(uow, CHANGE_ERROR, tags={"kind": f"fix:{kind}"})
            audit.record(uow, actor=actor, action="reconcile.fix_drift", result="error", target=subscription_id,
                         idempotency_key=key, details={"kind": kind, "action_id": action_id}, error=error.message)
            uow.commit()
        raise
    with uow:
        row = reconcile_rows.action(uow, action_id)
        assert row is not None
        before_plan = (row.before or {}).get("plan")
        upsert_subscription(
            uow, subscription, observed_at=fresh_observed_at(uow, subscription_id), settings=settings
        )
        if kind == rules.DRIFT_PENDING_PAST_PERIOD_END:
            state = subscription_state(subscription, settings)
            record_plan_change(uow, subscription_id, kind="downgrade_applied", actor=actor, from_plan=before_plan,
                               to_plan=state["plan"], details={"idempotency_key": key, "drift_fix": True})
        row.result = "fixed"
        row.after = {**(row.after or {}), "fixed_by": actor, "fixed_at": utcnow().isoformat(),
                     "fix": describe_fix(kind), "stripe_state": subscription_state(subscription, settings)}
        audit.record(uow, actor=actor, action="reconcile.fix_drift", result="ok", target=subscription_id,
                     idempotency_key=key, details={"kind": kind, "action_id": action_id})
        uow.commit()
    return FixResult(int(action_id), subscription_id, kind, "fixed", describe_fix(kind))


# Kinds whose "Apply fix" works; the others get no button (dismiss them with a reason instead).
FIXABLE_KINDS = frozenset({rules.DRIFT_PENDING_WITHOUT_CANCEL, rules.DRIFT_PENDING_PAST_PERIOD_END,
                           rules.DRIFT_PLAN_MISMATCH, rules.DRIFT_MISSING_IN_DB})
MIN_DISMISS_REASON = 10


def has_working_fix(kind: str) -> bool:
    return kind in FIXABLE_KINDS


@privileged("reconcile.dismiss_finding")
def dismiss_finding(action_id: int, reason: str, *, actor: str, settings: Settings, uow: UnitOfWork) -> FixResult:
    """Set a finding aside with a written reason (audited); it is hidden by default afterwards."""
    reason = (reason or "").strip()
    with uow:
        action = reconcile_rows.action(uow, action_id)
        if action is None or action.kind not in rules.DRIFT_KINDS:
            raise ReconcileError("No such drift finding.")
        target = action.stripe_subscription_id
        refusal = None
        if len(reason) < MIN_DISMISS_REASON:
            refusal = f"Write why this finding is dismissed ({MIN_DISMISS_REASON}+ characters)."
        elif action.result != "reported":
            refusal = f"This finding is already {action.result}."
        if refusal:
            audit.record(uow, actor=actor, action="reconcile.dismiss_finding", result="refused", target=target,
                         details={"action_id": int(action_id), "kind": action.kind}, error=refusal)
            uow.commit()
            raise ReconcileError(refusal)
        action.result = "dismissed"
        action.after = {**(action.after or {}), "dismissed_by": actor, "dismissed_reason": reason,
                        "dismissed_at": utcnow().isoformat()}
        audit.record(uow, actor=actor, action="reconcile.dismiss_finding", result="ok", target=target,
                     details={"action_id": int(action_id), "kind": action.kind, "reason": reason})
        uow.commit()
        return FixResult(int(action_id), target, action.kind, "dismissed", reason)
