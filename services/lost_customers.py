"""Lost customers: subscriptions that ended (Stripe cancelled them at the period end)
while their downgrade was still pending, so the customer who asked for a cheaper plan
was cancelled instead.

Reconciliation reports each as a `lost_customer` finding (services/reconciliation.py).
What can be done about one:
- re-subscribe the customer on the pending plan: a NEW subscription on the pending plan's
  price for the customer's default payment method (an ended subscription can never be
  changed again), idempotency key `resubscribe:<old sub id>:<plan>`, after a confirmation;
- or mark it handled with a written reason (e.g. the customer was called and left).
Both are privileged and audited. Applying a downgrade to the ended subscription is refused
before it reaches Stripe (reconciliation.apply_drift_fix) and is not a plan-change error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.models import Customer, ReconcileAction
from db.models.base import from_unix, utcnow
from db.repositories import customers as customer_rows
from db.repositories import reconciliation as reconcile_rows
from db.session import UnitOfWork
from services import audit
from services.audit import privileged
from services.config import Settings
from services.money import format_money
from services.plan_changes import monthly_amount, record_plan_change
from services.reconciliation import DECIDED_RESULTS, LOST_CUSTOMER, MIN_DISMISS_REASON, ReconcileError, last_run
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.stripe_mapping import upsert_subscription

AUDIT_RESUBSCRIBE = "reconcile.resubscribe_lost_customer"
AUDIT_HANDLED = "reconcile.mark_lost_customer_handled"
_ENDED = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True)
class LostCustomer:
    action_id: int
    subscription_id: str
    customer_id: str
    customer_name: str | None
    customer_email: str | None
    ended_at: int | None
    plan: str | None  # the plan it was on when it ended
    pending_plan: str
    pending_interval: str
    monthly_revenue_lost: int | None
    currency: str | None
    result: str  # reported | fixed | handled
    decision: str

    @property
    def revenue_text(self) -> str:
        if self.monthly_revenue_lost is None or not self.currency:
            return "unknown"
        return f"{format_money(self.monthly_revenue_lost, self.currency)} / month"

    @property
    def ended_text(self) -> str:
        moment = from_unix(self.ended_at)
        return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "unknown"

    def as_row(self) -> dict[str, Any]:
        return {"finding": self.action_id, "customer": self.customer_name or "", "email": self.customer_email or "",
                "customer id": self.customer_id, "subscription": self.subscription_id, "ended": self.ended_text,
                "was on": self.plan or "", "pending plan": f"{self.pending_plan} {self.pending_interval}",
                "monthly revenue lost": self.revenue_text, "status": self.result, "decision": self.decision}


def _decision(row: ReconcileAction) -> str:
    after = row.after or {}
    if row.result == "fixed":
        return f"re-subscribed as {after.get('new_subscription')} by {after.get('fixed_by')}"
    if row.result == "handled":
        return f"handled by {after.get('handled_by')}: {after.get('handled_reason')}"
    return ""


def _lost(row: ReconcileAction, customer: Customer | None) -> LostCustomer:
    after, before = row.after or {}, row.before or {}
    return LostCustomer(
        action_id=row.id, subscription_id=row.stripe_subscription_id, customer_id=str(after.get("customer") or ""),
        customer_name=customer.name if customer else None, customer_email=customer.email if customer else None,
        ended_at=after.get("ended_at"), plan=before.get("plan"), pending_plan=str(after.get("pending_plan") or ""),
        pending_interval=str(after.get("pending_interval") or "monthly"),
        monthly_revenue_lost=after.get("monthly_revenue_lost"), currency=after.get("currency"),
        result=row.result, decision=_decision(row),
    )


def lost_customers(uow: UnitOfWork, *, include_decided: bool = False) -> list[LostCustomer]:
    """Lost customers found by the last applied run (else the latest dry-run); re-subscribed
    and handled ones only when asked."""
    latest = last_run(uow, mode="apply") or last_run(uow, mode="dry-run")
    if latest is None:
        return []
    with uow:
        rows = reconcile_rows.actions_of_run(uow, latest["run"], kinds=(LOST_CUSTOMER,),
                                             results=None if include_decided else ("reported",))
        customers = customer_rows.customers_by_ids(uow, {str((row.after or {}).get("customer") or "") for row in rows})
        return [_lost(row, customers.get(str((row.after or {}).get("customer") or ""))) for row in rows]


def _load(uow: UnitOfWork, action_id: int) -> tuple[ReconcileAction, LostCustomer]:
    row = reconcile_rows.action(uow, action_id)
    if row is None or row.kind != LOST_CUSTOMER:
        raise ReconcileError("No such lost-customer finding.")
    customer_id = str((row.after or {}).get("customer") or "")
    return row, _lost(row, customer_rows.customer(uow, customer_id))


@dataclass(frozen=True)
class ResubscribePlan:
    lost: LostCustomer
    price_id: str
    amount: int
    currency: str
    payment_method: str
    idempotency_key: str
    mode: str

    @property
    def amount_text(self) -> str:
        return f"{format_money(self.amount, self.currency)} / month"


def resubscribe_key(subscription_id: str, plan: str) -> str:
    return f"resubscribe:{subscription_id}:{plan}"


def _refused(uow: UnitOfWork, actor: str, action: str, target: str, message: str, **details: Any) -> ReconcileError:
    with uow:
        audit.record(uow, actor=actor, action=action, result="refused", target=target, details=details, error=message)
        uow.commit()
    return ReconcileError(message)


def plan_resubscribe(
    action_id: int, *, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
) -> ResubscribePlan:
    """Read-only: what the re-subscription will be (for the confirmation). Raises
    ReconcileError with a plain message when it cannot work."""
    with uow:
        row, lost = _load(uow, action_id)
        result = row.result
    if result != "reported":
        raise ReconcileError(f"This lost customer is already {'re-subscribed' if result == 'fixed' else result}.")
    price_id = settings.price_id(lost.pending_plan, lost.pending_interval)
    if price_id is None:
        raise ReconcileError(f"The pending plan '{lost.pending_plan} {lost.pending_interval}' has no price in the "
                             "plan mapping; add it first (STRIPE_PRICE_<PLAN>_<INTERVAL>).")
    old = gateway.retrieve_subscription(lost.subscription_id)
    if old.get("status") not in _ENDED:
        raise ReconcileError(f"{lost.subscription_id} is {old.get('status')} again in Stripe; run reconciliation "
                             "again instead of re-subscribing.")
    customer = gateway.retrieve_customer(lost.customer_id)
    if customer.get("deleted"):
        raise ReconcileError("The customer was deleted in Stripe; there is nobody to re-subscribe.")
    payment_method = (customer.get("invoice_settings") or {}).get("default_payment_method")
    if isinstance(payment_method, dict):
        payment_method = payment_method.get("id")
    if not payment_method:
        raise ReconcileError("The customer has no default payment method in Stripe; ask them to add one (e.g. in "
                             "the customer portal), then re-subscribe.")
    price = gateway.retrieve_price(price_id)
    return ResubscribePlan(
        lost=lost, price_id=price_id, amount=int(round(monthly_amount(price))),
        currency=str(price.get("currency") or "usd"), payment_method=str(payment_method),
        idempotency_key=resubscribe_key(lost.subscription_id, lost.pending_plan), mode=settings.stripe_mode,
    )


@dataclass(frozen=True)
class ResubscribeResult:
    action_id: int
    old_subscription_id: str
    new_subscription_id: str
    status: str
    plan: str
    idempotency_key: str


@privileged(AUDIT_RESUBSCRIBE)
def resubscribe_lost_customer(
    action_id: int, *, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
) -> ResubscribeResult:
    """After the admin confirmed: a new subscription on the pending plan's price."""
    try:
        plan = plan_resubscribe(action_id, settings=settings, uow=uow, gateway=gateway)
    except ReconcileError as error:
        raise _refused(uow, actor, AUDIT_RESUBSCRIBE, f"finding:{action_id}", error.message,
                       action_id=int(action_id)) from None
    lost = plan.lost
    params = {
        "customer": lost.customer_id,
        "items": [{"price": plan.price_id}],
        "default_payment_method": plan.payment_method,
        "metadata": {"plan": lost.pending_plan, "interval": lost.pending_interval,
                     "resubscribed_from": lost.subscription_id},
    }
    details = {"action_id": int(action_id), "old_subscription": lost.subscription_id, "plan": lost.pending_plan,
               "price": plan.price_id, "amount": plan.amount, "currency": plan.currency}
    try:
        created = gateway.create_subscription(params, idempotency_key=plan.idempotency_key)
    except StripeGatewayError as error:
        with uow:
            audit.record(uow, actor=actor, action=AUDIT_RESUBSCRIBE, result="error", target=lost.subscription_id,
                         idempotency_key=plan.idempotency_key, details=details, error=error.message)
            uow.commit()
        raise
    new_id = str(created["id"])
    with uow:
        upsert_subscription(uow, created, observed_at=int(utcnow().timestamp()), settings=settings)
        record_plan_change(uow, new_id, kind="resubscribed", actor=actor, from_plan=lost.plan,
                           to_plan=lost.pending_plan,
                           details={"idempotency_key": plan.idempotency_key, "old_subscription": lost.subscription_id})
        row = reconcile_rows.action(uow, action_id)
        assert row is not None
        row.result = "fixed"
        row.after = {**(row.after or {}), "fixed_by": actor, "fixed_at": utcnow().isoformat(),
                     "fix": f"re-subscribed on {lost.pending_plan}", "new_subscription": new_id}
        audit.record(uow, actor=actor, action=AUDIT_RESUBSCRIBE, result="ok", target=lost.subscription_id,
                     idempotency_key=plan.idempotency_key, details={**details, "new_subscription": new_id,
                                                                    "status": created.get("status")})
        uow.commit()
    return ResubscribeResult(int(action_id), lost.subscription_id, new_id, str(created.get("status")),
                             lost.pending_plan, plan.idempotency_key)


@privileged(AUDIT_HANDLED)
def mark_lost_customer_handled(
    action_id: int, reason: str, *, actor: str, settings: Settings, uow: UnitOfWork
) -> LostCustomer:
    reason = (reason or "").strip()
    with uow:
        row, lost = _load(uow, action_id)
        refusal = None
        if len(reason) < MIN_DISMISS_REASON:
            refusal = f"Write how this lost customer was handled ({MIN_DISMISS_REASON}+ characters)."
        elif row.result in (*DECIDED_RESULTS, "fixed"):
            refusal = "This lost customer was already re-subscribed or handled."
        if refusal is None:
            row.result = "handled"
            row.after = {**(row.after or {}), "handled_by": actor, "handled_reason": reason,
                         "handled_at": utcnow().isoformat()}
            audit.record(uow, actor=actor, action=AUDIT_HANDLED, result="ok", target=lost.subscription_id,
                         details={"action_id": int(action_id), "reason": reason})
            uow.commit()
            return _lost(row, customer_rows.customer(uow, lost.customer_id))
    raise _refused(uow, actor, AUDIT_HANDLED, lost.subscription_id, refusal, action_id=int(action_id))
