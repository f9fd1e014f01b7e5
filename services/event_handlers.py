"""What each Stripe event does to the billing DB. Every handler is idempotent and
order-safe: objects that later events may have changed are re-read from Stripe
(the freshest state wins), immutable facts come from the event itself, and
metrics carry a dedupe key so a replay never counts twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from db.models import Charge, Customer, Dispute, FraudWarning, Invoice, Refund
from db.models.base import from_unix
from db.session import UnitOfWork
from services import event_batch_rows as batch_rows
from services import event_rereads as rereads
from services import metric_points as m
from services import stripe_mapping
from services.config import CONSOLE_EVENT_TYPES
from services.fraud_warnings import reopen_after_failed_refund
from services.runtime import Runtime
from services.smoke_test import record_checkout_completed
from services.stripe_gateway import StripeGatewayError
from services.stripe_objects import invoice_payment_intent, item_price_id, object_id
from services.webhook_counts import test_tags

Event = dict[str, Any]
Handler = Callable[[UnitOfWork, Event, Any, bool], None]


def _refetch(kind: str, key: str, fetch: Callable[[], dict[str, Any]],
             fallback: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Re-read an object from Stripe (or take what the batch read ahead, services/event_rereads.py);
    a deleted object falls back to the event's copy."""
    try:
        return rereads.read(kind, key, fetch), True
    except StripeGatewayError as error:
        if error.code == "resource_missing":
            return fallback, False
        raise


def _copy_may_be_stale(obj: dict[str, Any], refetch: bool) -> bool:
    """Re-read the event's object only where its copy can be stale: always outside a batch (a
    direct call), inside one only when the batch's plan says so (services/event_rereads.py)."""
    plan = rereads.current_plan()
    return refetch and (plan is None or not plan.copy_is_current(str(obj.get("id"))))


def _carried(obj: dict[str, Any]) -> dict[str, Any]:
    """The event's copy, or the newer copy a same-second sibling carries (the batch's plan)."""
    plan = rereads.current_plan()
    return plan.newest.get(str(obj.get("id")), obj) if plan is not None else obj


def _current_state(uow: UnitOfWork, model: Any, kind: str, obj: dict[str, Any],
                   fetch: Callable[[], dict[str, Any]], event: Event, refetch: bool) -> tuple[dict[str, Any], int]:
    """The state to store and its `observed_at`: Stripe's current object when re-read (the
    newest there is, so it wins), else the event's copy as of the event's time."""
    current, fresh = (_refetch(kind, str(obj["id"]), fetch, obj) if _copy_may_be_stale(obj, refetch)
                      else (_carried(obj), False))
    if not fresh:
        return current, int(event["created"])
    return current, stripe_mapping.fresh_observed_at(batch_rows.get(uow.session, model, str(obj["id"])))


def _flush(uow: UnitOfWork) -> None:
    """Write what the handler changed so far, so the lookups after it see it; in a batch they are
    served from its rows (services/event_batch_rows.py), and the batch is written once."""
    if not batch_rows.active(uow.session):
        uow.session.flush()


def _ensure_customer(uow: UnitOfWork, customer_id: str | None, runtime: Runtime) -> None:
    if not customer_id or batch_rows.get(uow.session, Customer, customer_id) is not None:
        return
    customer, fresh = _refetch("customer", customer_id, lambda: runtime.gateway.retrieve_customer(customer_id),
                               {"id": customer_id})
    if fresh and not customer.get("deleted"):
        stripe_mapping.upsert_customer(uow, customer, observed_at=stripe_mapping.fresh_observed_at(None))


def _sync_subscription(uow: UnitOfWork, subscription_id: str, fallback: dict[str, Any], event: Event,
                       runtime: Runtime, refetch: bool, *, carried: bool = True) -> None:
    existing = batch_rows.subscription(uow.session, subscription_id)
    subscription, fresh = (
        _refetch("subscription", subscription_id, lambda: runtime.gateway.retrieve_subscription(subscription_id),
                 fallback)
        if (refetch and not carried) or (carried and _copy_may_be_stale(fallback, refetch))
        else (_carried(fallback), False)
    )
    _ensure_customer(uow, object_id(subscription.get("customer")), runtime)
    observed_at = stripe_mapping.fresh_observed_at(existing) if fresh else event["created"]
    stripe_mapping.upsert_subscription(
        uow, subscription, observed_at=observed_at, settings=runtime.settings, source_event_id=event["id"]
    )
    changed = _plan_change(event, runtime)
    if changed is not None:
        m.record_metric(uow, m.PLAN_CHANGED, at=from_unix(event["created"]),
                        tags={"from": changed[0], "to": changed[1], **test_tags(event)},
                        dedupe_key=f"{event['id']}:{m.PLAN_CHANGED}")


def _plan_for(subscription: dict[str, Any], runtime: Runtime) -> str | None:
    price = item_price_id(subscription)
    mapped = runtime.settings.plan_for_price(price) if price else None
    return mapped[0] if mapped else None


def _plan_change(event: Event, runtime: Runtime) -> tuple[str | None, str] | None:
    """(from, to) when the event itself says the plan changed: an update whose
    `previous_attributes.items` held another plan's price. Read from the event, not from what
    the DB held before, so the count does not depend on the order events arrive in."""
    data = event.get("data") or {}
    previous = data.get("previous_attributes") or {}
    if "items" not in previous or not isinstance(previous["items"], dict):
        return None
    before, after = _plan_for({"items": previous["items"]}, runtime), _plan_for(data.get("object") or {}, runtime)
    return (before, after) if after is not None and before != after else None


def on_subscription(uow: UnitOfWork, event: Event, runtime: Runtime, refetch: bool) -> None:
    obj = event["data"]["object"]
    _sync_subscription(uow, obj["id"], obj, event, runtime, refetch)


def on_checkout_completed(uow: UnitOfWork, event: Event, runtime: Runtime, refetch: bool) -> None:
    session = event["data"]["object"]
    _ensure_customer(uow, object_id(session.get("customer")), runtime)
    subscription_id = object_id(session.get("subscription"))
    if subscription_id:
        _sync_subscription(uow, subscription_id, {"id": subscription_id}, event, runtime, True, carried=False)
    record_checkout_completed(uow, session, event)  # the guided smoke test's session, if it is one


def _recovery_method(row: Invoice, runtime: Runtime) -> str:
    """customer_action when it needed SCA; card_update when the paying card is not the
    one that failed; otherwise a retry of the same card recovered it."""
    if row.action_required_at is not None:
        return "customer_action"
    if row.payment_intent_id:
        charges = list(runtime.gateway.list_charges(payment_intent=row.payment_intent_id))
        failed = {c.get("payment_method") for c in charges if c.get("status") == "failed"}
        paid = {c.get("payment_method") for c in charges if c.get("status") == "succeeded"}
        if failed and paid and not paid <= failed:
            return "card_update"
    return "retry"


def _derive_recovery(uow: UnitOfWork, row: Invoice, runtime: Runtime, extra: dict[str, Any] | None = None) -> None:
    """Same result whatever order the failed/paid events arrive in."""
    entered = [t for t in (row.payment_failed_at, row.action_required_at) if t is not None]
    if not entered or row.paid_at is None or row.recovered_at is not None:
        return
    row.recovered_at = row.paid_at
    row.recovery_method = _recovery_method(row, runtime)
    tags = {"plan": row.plan or "unknown", "method": row.recovery_method, **(extra or {})}
    if row.payment_failed_at is not None:
        m.record_metric(uow, m.DUNNING_RECOVERED, at=row.paid_at, tags=tags,
                        dedupe_key=f"invoice:{row.id}:{m.DUNNING_RECOVERED}")
    if row.action_required_at is not None:
        m.record_metric(uow, m.SCA_COMPLETED, at=row.paid_at, tags=tags,
                        dedupe_key=f"invoice:{row.id}:{m.SCA_COMPLETED}")


def _earliest(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if current is None:
        return candidate
    if candidate is None:
        return current
    return min(current, candidate)


def on_invoice(uow: UnitOfWork, event: Event, runtime: Runtime, refetch: bool) -> None:
    invoice = event["data"]["object"]
    _ensure_customer(uow, object_id(invoice.get("customer")), runtime)
    # The status can change several times in one second (action required, then paid):
    # the current state comes from Stripe, the dunning facts from the event itself.
    current, observed_at = _current_state(
        uow, Invoice, "invoice", invoice, lambda: runtime.gateway.retrieve_invoice(invoice["id"]), event, refetch)
    row = stripe_mapping.upsert_invoice(uow, current, settings=runtime.settings, observed_at=observed_at)
    row.payment_intent_id = row.payment_intent_id or invoice_payment_intent(invoice)
    at = from_unix(event["created"])
    tags = {"plan": row.plan or "unknown", **test_tags(event)}  # test-clock / QA activity kept apart
    kind = event["type"]
    if kind == "invoice.payment_failed":
        row.payment_failed_at = _earliest(row.payment_failed_at, at)
        m.record_metric(uow, m.INVOICE_FAILED, at=at, tags=tags, dedupe_key=f"{event['id']}:{m.INVOICE_FAILED}")
        m.record_metric(uow, m.DUNNING_ENTERED, at=row.payment_failed_at, tags=tags,
                        dedupe_key=f"invoice:{row.id}:{m.DUNNING_ENTERED}")
    elif kind == "invoice.payment_action_required":
        row.action_required_at = _earliest(row.action_required_at, at)
        m.record_metric(uow, m.INVOICE_ACTION_REQUIRED, at=at, tags=tags,
                        dedupe_key=f"{event['id']}:{m.INVOICE_ACTION_REQUIRED}")
        m.record_metric(uow, m.SCA_ENTERED, at=row.action_required_at, tags=tags,
                        dedupe_key=f"invoice:{row.id}:{m.SCA_ENTERED}")
    elif kind in ("invoice.paid", "invoice.payment_succeeded"):
        paid_at = from_unix((invoice.get("status_transitions") or {}).get("paid_at")) or at
        row.paid_at = row.paid_at or paid_at
        # Both events arrive for every paid invoice: count the invoice once.
        m.record_metric(uow, m.INVOICE_PAID, at=row.paid_at, tags=tags, dedupe_key=f"invoice:{row.id}:{m.INVOICE_PAID}")
    _flush(uow)
    _derive_recovery(uow, row, runtime, test_tags(event))


def _sync_charge(uow: UnitOfWork, charge_id: str | None, event: Event, runtime: Runtime, refetch: bool,
                 payload: dict[str, Any] | None = None) -> None:
    if not charge_id:
        return
    if not refetch and payload is None:
        return  # a backfill lists every charge afterwards
    # A charge the event does not carry (a dispute's, a refund's) is always read; a carried one
    # only where its copy can be stale.
    read_it = refetch if payload is None else _copy_may_be_stale(payload, refetch)
    known: dict[str, Any] = _carried(payload) if payload is not None else {"id": charge_id}
    charge, fresh = (
        _refetch("charge", charge_id, lambda: runtime.gateway.retrieve_charge(charge_id), known)
        if read_it else (known, False)
    )
    if not charge.get("amount") and not fresh:
        return
    _ensure_customer(uow, object_id(charge.get("customer")), runtime)
    stored = batch_rows.get(uow.session, Charge, charge_id)
    observed_at = stripe_mapping.fresh_observed_at(stored) if fresh else int(event["created"])
    stripe_mapping.upsert_charge(uow, charge, observed_at=observed_at)
    for refund in ((charge.get("refunds") or {}).get("data") or []):
        stripe_mapping.upsert_refund(uow, refund, observed_at=observed_at)


def on_charge(uow: UnitOfWork, event: Event, runtime: Runtime, refetch: bool) -> None:
    charge = event["data"]["object"]
    _sync_charge(uow, charge["id"], event, runtime, refetch, charge)


def on_dispute(uow: UnitOfWork, event: Event, runtime: Runtime, refetch: bool) -> None:
    dispute = event["data"]["object"]
    _sync_charge(uow, object_id(dispute.get("charge")), event, runtime, refetch)
    _flush(uow)
    current, observed_at = _current_state(
        uow, Dispute, "dispute", dispute, lambda: runtime.gateway.retrieve_dispute(dispute["id"]), event, refetch)
    stripe_mapping.upsert_dispute(uow, current, observed_at=observed_at)


def on_early_fraud_warning(uow: UnitOfWork, event: Event, runtime: Runtime, refetch: bool) -> None:
    warning = event["data"]["object"]
    _sync_charge(uow, object_id(warning.get("charge")), event, runtime, refetch)
    _flush(uow)
    current, observed_at = _current_state(
        uow, FraudWarning, "radar.early_fraud_warning", warning,
        lambda: runtime.gateway.retrieve_early_fraud_warning(warning["id"]), event, refetch)
    stripe_mapping.upsert_fraud_warning(uow, current, observed_at=observed_at)


def on_refund(uow: UnitOfWork, event: Event, runtime: Runtime, refetch: bool) -> None:
    """refund.created / .updated / .failed and charge.refund.updated: the refund's status (pending,
    succeeded, failed, canceled), re-read so the newest wins whatever the order; its charge too (a
    failed refund gives the money back, so amount_refunded drops), and a warning we marked refunded
    by a refund that failed is open again."""
    refund = event["data"]["object"]
    _sync_charge(uow, object_id(refund.get("charge")), event, runtime, refetch)
    _flush(uow)
    current, observed_at = _current_state(
        uow, Refund, "refund", refund, lambda: runtime.gateway.retrieve_refund(refund["id"]), event, refetch)
    row = stripe_mapping.upsert_refund(uow, current, observed_at=observed_at)
    _flush(uow)
    reopen_after_failed_refund(uow, {"id": row.id, "status": row.status, "failure_reason": row.failure_reason})


# Which handler serves each event type, by the object the type names (most specific
# prefix first); the types themselves are the one list in config.CONSOLE_EVENT_TYPES.
_HANDLER_BY_PREFIX: tuple[tuple[str, Handler], ...] = (
    ("checkout.session.", on_checkout_completed),
    ("customer.subscription.", on_subscription),
    ("invoice.", on_invoice),
    ("charge.dispute.", on_dispute),
    ("charge.refund.", on_refund),
    ("charge.", on_charge),
    ("refund.", on_refund),
    ("radar.early_fraud_warning.", on_early_fraud_warning),
)


def _handler_for(event_type: str) -> Handler:
    for prefix, handler in _HANDLER_BY_PREFIX:
        if event_type.startswith(prefix):
            return handler
    raise LookupError(f"no handler for the subscribed event type {event_type}")


HANDLERS: dict[str, Handler] = {event_type: _handler_for(event_type) for event_type in CONSOLE_EVENT_TYPES}


def handle_event(uow: UnitOfWork, event: Event, runtime: Runtime, *, refetch: bool = True) -> None:
    """Apply one event. `refetch` re-reads mutable objects from Stripe so the newest
    state wins even when several changes share one second and arrive out of order."""
    handler = HANDLERS.get(event["type"])
    if handler is not None:
        handler(uow, event, runtime, refetch)
