"""Manual subscription corrections, the rollback plan's "use customer.subscription.update for
manual corrections" (Numzy runbook §12) done from the console instead of the Dashboard.

One correction at a time, always previewed first: `describe_correction` reads the subscription at
Stripe and says what it is now and what it will be (before/after); `apply_correction` (admin,
after a confirmation) re-reads it, refuses if it changed since the preview, sends one
`subscriptions.update` with its own idempotency key (`correction:<sub>:<kind>:<n>`, n = how many
corrections this subscription had before, so a retried click replays and a later correction is a
new request), stores the new state, a plan-history row and one audit row with before and after.

Kinds: change the price (item price swap, `proration_behavior=none`: a correction fixes a mistake
and invoices nothing by itself), set or clear `cancel_at_period_end`, and clear a pending plan
(`metadata.pending_plan` and `metadata.pending_interval` unset with empty strings, as Stripe
documents for metadata keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from db.models.base import from_unix
from db.session import UnitOfWork
from services import audit
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError
from services.metric_points import CHANGE_ERROR, SUBSCRIPTION_CHANGE, record_metric
from services.money import format_money
from services.plan_change_queries import customer_label
from services.plan_changes import (
    CHANGEABLE_STATUSES,
    _changes_so_far,
    fresh_observed_at,
    record_plan_change,
    subscription_item,
)
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.stripe_mapping import upsert_subscription
from services.stripe_objects import item_price_id, subscription_period

KINDS = {
    "change_price": "Change the price",
    "set_cancel_at_period_end": "Set cancel at period end",
    "clear_cancel_at_period_end": "Clear cancel at period end",
    "clear_pending_plan": "Clear the pending plan",
}
PLAN_CHANGE_KIND = "correction"
AUDIT_ACTION = "subscription.correct"
CORRECTION_PRORATION = "none"


class CorrectionError(ConsoleError):
    """A correction was refused before anything reached Stripe; the message says why."""


@dataclass(frozen=True)
class CorrectionPreview:
    subscription_id: str
    kind: str
    customer: str  # customer-controlled: shown as plain text
    mode: str
    before: dict[str, Any]
    after: dict[str, Any]
    params: dict[str, Any]
    idempotency_key: str
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return KINDS[self.kind]

    def rows(self) -> list[dict[str, str]]:
        """Before and after, field by field, for the preview and the confirmation."""
        return [{"field": name, "before": value_text(self.before.get(name)), "after": value_text(self.after.get(name)),
                 "changes": "yes" if self.before.get(name) != self.after.get(name) else ""}
                for name in STATE_FIELDS]


@dataclass(frozen=True)
class CorrectionResult:
    subscription_id: str
    kind: str
    idempotency_key: str
    before: dict[str, Any]
    after: dict[str, Any]


STATE_FIELDS = ("status", "price", "plan", "amount", "cancel_at_period_end", "pending_plan", "period_end")


def value_text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value).lower() if isinstance(value, bool) else str(value)


def state(subscription: dict[str, Any], settings: Settings, price: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields a correction can change, as a person reads them."""
    price_id = item_price_id(subscription)
    mapped = settings.plan_for_price(price_id) if price_id else None
    if price is None:
        items = (subscription.get("items") or {}).get("data") or []
        embedded = items[0].get("price") if items else None
        price = embedded if isinstance(embedded, dict) else None
    amount = None
    if price and price.get("unit_amount") is not None and price.get("currency"):
        interval = (price.get("recurring") or {}).get("interval")
        amount = format_money(int(price["unit_amount"]), str(price["currency"])) + (f" per {interval}" if interval
                                                                                    else "")
    metadata = subscription.get("metadata") or {}
    period_end = subscription_period(subscription)[1]
    return {
        "status": subscription.get("status"),
        "price": price_id,
        "plan": " ".join(mapped) if mapped else None,
        "amount": amount,
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
        "pending_plan": metadata.get("pending_plan") or None,
        "period_end": f"{from_unix(period_end):%Y-%m-%d %H:%M} UTC" if period_end else None,
    }


def _retrieve(gateway: StripeGateway, subscription_id: str) -> dict[str, Any]:
    subscription_id = (subscription_id or "").strip()
    if not subscription_id.startswith("sub_"):
        raise CorrectionError("Enter a Stripe subscription id (it starts with sub_).")
    try:
        return gateway.retrieve_subscription(subscription_id)
    except StripeGatewayError as error:
        raise CorrectionError(f"{subscription_id}: {error.message}") from None


def describe_correction(subscription_id: str, kind: str, *, price_id: str | None = None, settings: Settings,
                        uow: UnitOfWork, gateway: StripeGateway) -> CorrectionPreview:
    """Read-only: what the correction will change (refused here when it cannot work)."""
    if kind not in KINDS:
        raise CorrectionError(f"Unknown correction {kind!r}: use one of {', '.join(KINDS)}.")
    subscription = _retrieve(gateway, subscription_id)
    sid = str(subscription["id"])
    if subscription.get("status") not in CHANGEABLE_STATUSES:
        raise CorrectionError(f"{sid} is {subscription.get('status')}; only a live subscription can be corrected "
                              "(start a new one instead).")
    before = state(subscription, settings)
    metadata = subscription.get("metadata") or {}
    notes: list[str] = []
    new_price: dict[str, Any] | None = None
    if kind == "change_price":
        target = (price_id or "").strip()
        if not target.startswith("price_"):
            raise CorrectionError("Choose the price to switch to (a price_... id).")
        if target == before["price"]:
            raise CorrectionError(f"{sid} is already on {target}.")
        try:
            new_price = gateway.retrieve_price(target)
        except StripeGatewayError as error:
            raise CorrectionError(f"{target}: {error.message}") from None
        if not new_price.get("active") or not new_price.get("recurring"):
            raise CorrectionError(f"{target} is not an active recurring price.")
        if bool(new_price.get("livemode")) != (settings.stripe_mode == "live"):
            raise CorrectionError(f"{target} belongs to the other Stripe mode.")
        params: dict[str, Any] = {"items": [{"id": subscription_item(subscription)["id"], "price": target}],
                                  "proration_behavior": CORRECTION_PRORATION}
        notes.append("No proration: nothing is invoiced or credited now; the next renewal bills the new price.")
        if not settings.plan_for_price(target):
            notes.append(f"{target} is not in the console's plan mapping, so the billing DB will show no plan name.")
    elif kind == "set_cancel_at_period_end":
        if before["cancel_at_period_end"]:
            raise CorrectionError(f"{sid} is already set to cancel at period end.")
        params = {"cancel_at_period_end": True}
        notes.append("The subscription ends at the period end unless cleared again.")
    elif kind == "clear_cancel_at_period_end":
        if not before["cancel_at_period_end"]:
            raise CorrectionError(f"{sid} is not set to cancel at period end.")
        params = {"cancel_at_period_end": False}
        if before["pending_plan"]:
            notes.append(f"The pending plan {before['pending_plan']} stays in metadata: reconciliation will still "
                         "apply that downgrade; clear the pending plan too if it is wrong.")
    else:
        if not metadata.get("pending_plan"):
            raise CorrectionError(f"{sid} has no pending plan.")
        params = {"metadata": {"pending_plan": "", "pending_interval": ""}}
        if before["cancel_at_period_end"]:
            notes.append("cancel_at_period_end stays true, so the subscription ENDS at the period end; clear it too "
                         "to keep the customer on the current plan.")
    after_subscription = _expected(subscription, params, new_price)
    after = state(after_subscription, settings, new_price)
    with uow:
        count = _changes_so_far(uow, sid, (PLAN_CHANGE_KIND,))
    return CorrectionPreview(sid, kind, _customer(uow, gateway, str(subscription.get("customer") or "")),
                             settings.stripe_mode, before, after, params, f"correction:{sid}:{kind}:{count + 1}",
                             notes)


def _customer(uow: UnitOfWork, gateway: StripeGateway, customer_id: str) -> str:
    """`Name <email> (cus_…)` from the billing DB, else from Stripe (not mirrored yet)."""
    label = customer_label(uow, customer_id)
    if not label.startswith("unknown customer") or not customer_id:
        return label
    try:
        customer = gateway.retrieve_customer(customer_id)
    except StripeGatewayError:
        return label
    parts = [p for p in (customer.get("name"), f"<{customer['email']}>" if customer.get("email") else None) if p]
    return f"{' '.join(parts) or 'unknown customer'} ({customer_id})"


def _expected(subscription: dict[str, Any], params: dict[str, Any], price: dict[str, Any] | None) -> dict[str, Any]:
    expected = dict(subscription)
    if "cancel_at_period_end" in params:
        expected["cancel_at_period_end"] = params["cancel_at_period_end"]
    if "metadata" in params:
        expected["metadata"] = {k: v for k, v in (subscription.get("metadata") or {}).items()
                                if params["metadata"].get(k, v) != ""}
    if price is not None:
        item = dict(subscription_item(subscription), price=price)
        expected["items"] = {**(subscription.get("items") or {}), "data": [item]}
    return expected


@privileged(AUDIT_ACTION)
def apply_correction(preview: CorrectionPreview, *, actor: str, settings: Settings, uow: UnitOfWork,
                     gateway: StripeGateway) -> CorrectionResult:
    """Send the previewed correction (refused if the subscription changed since the preview)."""
    sid = preview.subscription_id
    details = {"kind": preview.kind, "before": preview.before, "after": preview.after, "params": preview.params}
    current: dict[str, Any] | None = None
    refusal: str | None
    try:
        current = state(_retrieve(gateway, sid), settings)
    except CorrectionError as error:
        refusal = error.message
    else:
        refusal = None if current == preview.before else (
            "The subscription changed since the preview (someone else, or a webhook); preview again.")
    if refusal:
        with uow:
            audit.record(uow, actor=actor, action=AUDIT_ACTION, result="refused", target=sid,
                         idempotency_key=preview.idempotency_key, details={**details, "now": current}, error=refusal)
            uow.commit()
        raise CorrectionError(refusal)
    try:
        updated = gateway.update_subscription(sid, preview.params, idempotency_key=preview.idempotency_key)
    except StripeGatewayError as error:
        with uow:
            record_metric(uow, CHANGE_ERROR, tags={"kind": PLAN_CHANGE_KIND, "code": error.code or "unknown"})
            audit.record(uow, actor=actor, action=AUDIT_ACTION, result="error", target=sid,
                         idempotency_key=preview.idempotency_key, details=details, error=error.message)
            uow.commit()
        raise
    after = state(updated, settings)
    with uow:
        upsert_subscription(uow, updated, observed_at=fresh_observed_at(uow, sid), settings=settings)
        plans = [settings.plan_for_price(p) for p in (preview.before.get("price"), after.get("price")) if p]
        record_plan_change(uow, sid, kind=PLAN_CHANGE_KIND, actor=actor,
                           from_plan=plans[0][0] if plans and plans[0] else None,
                           to_plan=plans[-1][0] if plans and plans[-1] else None,
                           details={"correction": preview.kind, "idempotency_key": preview.idempotency_key,
                                    "before": preview.before, "after": after})
        # Counted with the other plan changes, so the change-error rate has the right denominator.
        record_metric(uow, SUBSCRIPTION_CHANGE, tags={"kind": PLAN_CHANGE_KIND, "correction": preview.kind},
                      dedupe_key=f"{preview.idempotency_key}:{SUBSCRIPTION_CHANGE}")
        audit.record(uow, actor=actor, action=AUDIT_ACTION, result="ok", target=sid,
                     idempotency_key=preview.idempotency_key, details={**details, "after": after})
        uow.commit()
    return CorrectionResult(sid, preview.kind, preview.idempotency_key, preview.before, after)


def price_choices(settings: Settings) -> dict[str, str]:
    """price id -> "plan interval" from the console's mapping, for the change-price picker."""
    return {price: f"{plan} {interval}" for plan, intervals in sorted(settings.price_mapping.items())
            for interval, price in sorted(intervals.items())}
