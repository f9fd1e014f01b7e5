"""The one place each Stripe object is mapped onto our billing-DB models.

Every upsert takes the Stripe object (a dict, API version pinned by the
gateway) and `observed_at`: the `created` time of the event that carried it,
or the time it was read from the API. State older than what is stored is
ignored, so late or replayed events never overwrite newer state (Stripe does
not guarantee delivery order). Upserts never commit: the caller's unit of
work does, together with the event's processed mark.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select

from db.models import (
    Charge,
    Customer,
    Dispute,
    FraudWarning,
    Invoice,
    PlanChange,
    Refund,
    UserSubscription,
)
from db.models.base import Base, from_unix, utcnow
from db.session import UnitOfWork
from services import event_batch_rows as batch_rows
from services.config import Settings
from services.stripe_objects import invoice_subscription_id, item_id, item_price_id, object_id, subscription_period

_id = object_id  # short local name for the mappers below

ModelT = TypeVar("ModelT", bound=Base)

ACTIVE_SUBSCRIPTION_STATUSES = frozenset({"active", "trialing"})


def _get_or_new(uow: UnitOfWork, model: type[ModelT], key: Any, **lookup: Any) -> tuple[ModelT, bool]:
    # While a batch of events is applied, from the rows it loaded up front (services/event_batch_rows.py).
    row: Any
    if model is UserSubscription and set(lookup) == {"stripe_subscription_id"}:
        row = batch_rows.subscription(uow.session, lookup["stripe_subscription_id"])
    elif lookup:
        row = uow.session.execute(select(model).filter_by(**lookup)).scalar_one_or_none()
    else:
        row = batch_rows.get(uow.session, model, key)
    if row is not None:
        return row, False
    # Added to the session by the caller once filled in, so an autoflush
    # triggered by a lookup never inserts a half-built row.
    return model(**(lookup or {"id": key})), True


def _is_stale(row: Any, observed_at: int, is_new: bool) -> bool:
    return not is_new and (row.stripe_updated or 0) > observed_at


def fresh_observed_at(stored: Any | None) -> int:
    """`observed_at` for an object Stripe has just returned to us: the newest state there
    is, so it must win even over events stamped with a test clock's future time."""
    return max(int(utcnow().timestamp()), int(getattr(stored, "stripe_updated", 0) or 0) + 1)


IP_MAX_CHARS = 64  # an IPv6 address with a zone fits; anything longer is not an IP


def metadata_ip(metadata: dict[str, Any]) -> str | None:
    """`metadata.ip`, the purchase IP the app records (Stripe puts no client IP on a charge)."""
    value = str(metadata.get("ip") or "").strip()
    return value if value and len(value) <= IP_MAX_CHARS else None


def upsert_customer(uow: UnitOfWork, obj: dict[str, Any], *, observed_at: int) -> Customer:
    row, is_new = _get_or_new(uow, Customer, obj["id"])
    if _is_stale(row, observed_at, is_new):
        return row
    metadata = obj.get("metadata") or {}
    row.email = obj.get("email")
    row.name = obj.get("name")
    row.user_id = metadata.get("user_id") or row.user_id
    row.metadata_ip = metadata_ip(metadata)
    row.created = from_unix(obj.get("created"))
    row.raw = obj
    row.stripe_updated = observed_at
    batch_rows.add(uow.session, row)
    return row


def upsert_subscription(
    uow: UnitOfWork, obj: dict[str, Any], *, observed_at: int, settings: Settings, source_event_id: str | None = None
) -> UserSubscription:
    row, is_new = _get_or_new(uow, UserSubscription, None, stripe_subscription_id=obj["id"])
    if _is_stale(row, observed_at, is_new):
        return row
    price_id = item_price_id(obj)
    plan_interval = settings.plan_for_price(price_id) if price_id else None
    previous_plan = None if is_new else row.plan
    period_start, period_end = subscription_period(obj)
    metadata = obj.get("metadata") or {}

    row.stripe_customer_id = _id(obj.get("customer")) or ""
    row.status = obj.get("status") or "incomplete"
    row.is_active = row.status in ACTIVE_SUBSCRIPTION_STATUSES
    row.stripe_price_id = price_id
    row.stripe_item_id = item_id(obj)
    row.plan, row.interval = plan_interval if plan_interval else (None, None)
    row.current_period_start = from_unix(period_start)
    row.current_period_end = from_unix(period_end)
    row.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    row.pending_plan = metadata.get("pending_plan") or None
    row.user_id = metadata.get("user_id") or row.user_id
    row.canceled_at = from_unix(obj.get("canceled_at") or obj.get("ended_at"))
    row.started_at = from_unix(obj.get("start_date") or obj.get("created"))
    row.latest_invoice_id = _id(obj.get("latest_invoice"))
    row.raw = obj
    row.stripe_updated = observed_at
    if row.user_id is None:
        customer = batch_rows.get(uow.session, Customer, row.stripe_customer_id)
        row.user_id = customer.user_id if customer else None

    if not is_new and previous_plan != row.plan and row.plan is not None:
        _record_plan_change(uow, row, previous_plan, "observed", observed_at, source_event_id)
    batch_rows.add(uow.session, row)
    return row


def _record_plan_change(
    uow: UnitOfWork,
    row: UserSubscription,
    from_plan: str | None,
    kind: str,
    observed_at: int,
    source_event_id: str | None,
) -> None:
    if source_event_id is not None:
        seen = uow.session.execute(
            select(PlanChange.id).where(PlanChange.source_event_id == source_event_id)
        ).first()
        if seen:
            return
    uow.session.add(
        PlanChange(
            stripe_subscription_id=row.stripe_subscription_id,
            from_plan=from_plan,
            to_plan=row.plan,
            kind=kind,
            at=from_unix(observed_at) or utcnow(),
            actor="stripe",
            source_event_id=source_event_id,
            details={"price": row.stripe_price_id},
        )
    )


def upsert_invoice(uow: UnitOfWork, obj: dict[str, Any], *, observed_at: int, settings: Settings) -> Invoice:
    """Stripe's invoice fields only; dunning/SCA timestamps are set by the event handlers."""
    row, is_new = _get_or_new(uow, Invoice, obj["id"])
    if _is_stale(row, observed_at, is_new):
        return row
    lines = (obj.get("lines") or {}).get("data") or []
    plan = None
    for line in lines:
        pricing = line.get("pricing") or {}
        price_id = _id((pricing.get("price_details") or {}).get("price")) or _id(line.get("price"))
        mapped = settings.plan_for_price(price_id) if price_id else None
        if mapped:
            plan = mapped[0]
            break
    transitions = obj.get("status_transitions") or {}
    row.stripe_customer_id = _id(obj.get("customer"))
    row.stripe_subscription_id = invoice_subscription_id(obj)
    row.status = obj.get("status")
    row.billing_reason = obj.get("billing_reason")
    row.amount_due = int(obj.get("amount_due") or 0)
    row.amount_paid = int(obj.get("amount_paid") or 0)
    row.currency = (obj.get("currency") or "usd").lower()
    row.attempt_count = int(obj.get("attempt_count") or 0)
    row.plan = plan or row.plan
    row.created = from_unix(obj.get("created"))
    row.paid_at = from_unix(transitions.get("paid_at")) or row.paid_at
    row.payment_intent_id = _id(obj.get("payment_intent")) or row.payment_intent_id
    row.hosted_invoice_url = obj.get("hosted_invoice_url")
    row.raw = obj
    row.stripe_updated = observed_at
    batch_rows.add(uow.session, row)
    return row


def upsert_charge(uow: UnitOfWork, obj: dict[str, Any], *, observed_at: int) -> Charge:
    row, is_new = _get_or_new(uow, Charge, obj["id"])
    if _is_stale(row, observed_at, is_new):
        return row
    details = obj.get("payment_method_details") or {}
    card = details.get("card") or {}
    outcome = obj.get("outcome") or {}
    three_d_secure = card.get("three_d_secure") or {}
    row.stripe_customer_id = _id(obj.get("customer"))
    row.payment_intent_id = _id(obj.get("payment_intent"))
    row.invoice_id = _id(obj.get("invoice")) or row.invoice_id
    row.amount = int(obj.get("amount") or 0)
    row.amount_refunded = int(obj.get("amount_refunded") or 0)
    row.currency = (obj.get("currency") or "usd").lower()
    row.status = obj.get("status")
    row.paid = bool(obj.get("paid"))
    row.refunded = bool(obj.get("refunded"))
    row.disputed = bool(obj.get("disputed"))
    row.card_brand = card.get("brand")
    row.card_last4 = card.get("last4")
    row.card_country = card.get("country")
    row.card_fingerprint = card.get("fingerprint")
    row.metadata_ip = metadata_ip(obj.get("metadata") or {})
    row.three_d_secure_result = three_d_secure.get("result")
    row.risk_level = outcome.get("risk_level")
    row.risk_score = outcome.get("risk_score")
    row.created = from_unix(obj.get("created"))
    row.raw = obj
    row.stripe_updated = observed_at
    batch_rows.add(uow.session, row)
    return row


def upsert_refund(uow: UnitOfWork, obj: dict[str, Any], *, observed_at: int) -> Refund:
    """A refund's state; an older observation (a late refund.created after refund.failed) is ignored."""
    row, is_new = _get_or_new(uow, Refund, obj["id"])
    if _is_stale(row, observed_at, is_new):
        return row
    row.stripe_updated = observed_at
    row.failure_reason = obj.get("failure_reason")
    row.charge_id = _id(obj.get("charge"))
    row.amount = int(obj.get("amount") or 0)
    row.currency = (obj.get("currency") or "usd").lower()
    row.reason = obj.get("reason")
    row.status = obj.get("status")
    row.created = from_unix(obj.get("created"))
    row.raw = obj
    batch_rows.add(uow.session, row)
    return row


def _customer_email(uow: UnitOfWork, customer_id: str | None) -> str | None:
    if not customer_id:
        return None
    customer = batch_rows.get(uow.session, Customer, customer_id)
    return customer.email if customer else None


def upsert_dispute(uow: UnitOfWork, obj: dict[str, Any], *, observed_at: int) -> Dispute:
    row, is_new = _get_or_new(uow, Dispute, obj["id"])
    if _is_stale(row, observed_at, is_new):
        return row
    charge_field = obj.get("charge")
    charge_id = _id(charge_field)
    charge = batch_rows.get(uow.session, Charge, charge_id) if charge_id else None
    customer_id = (
        _id(charge_field.get("customer")) if isinstance(charge_field, dict) else None
    ) or (charge.stripe_customer_id if charge else None)
    evidence_details = obj.get("evidence_details") or {}
    row.charge_id = charge_id
    row.payment_intent_id = _id(obj.get("payment_intent"))
    row.stripe_customer_id = customer_id or row.stripe_customer_id
    row.customer_email = (
        _customer_email(uow, row.stripe_customer_id)
        or (obj.get("evidence") or {}).get("customer_email_address")
        or row.customer_email
    )
    row.amount = int(obj.get("amount") or 0)
    row.currency = (obj.get("currency") or "usd").lower()
    row.reason = obj.get("reason")
    row.status = obj.get("status") or "needs_response"
    row.due_by = from_unix(evidence_details.get("due_by"))
    row.has_evidence = bool(evidence_details.get("has_evidence"))
    row.submission_count = int(evidence_details.get("submission_count") or 0)
    row.is_charge_refundable = bool(obj.get("is_charge_refundable"))
    row.created = from_unix(obj.get("created"))
    if row.status in ("won", "lost", "warning_closed") and row.closed_at is None:
        row.closed_at = from_unix(observed_at)
    row.raw = obj
    row.stripe_updated = observed_at
    if charge is not None:
        charge.disputed = True
    batch_rows.add(uow.session, row)
    return row


def upsert_fraud_warning(uow: UnitOfWork, obj: dict[str, Any], *, observed_at: int) -> FraudWarning:
    """Stripe's fields only: our status/action/actor/reason are an ops decision that
    a later radar.early_fraud_warning.updated must never reset."""
    row, is_new = _get_or_new(uow, FraudWarning, obj["id"])
    if is_new:
        row.status = "open"
    if _is_stale(row, observed_at, is_new):
        return row
    charge_field = obj.get("charge")
    charge_id = _id(charge_field) or ""
    charge = batch_rows.get(uow.session, Charge, charge_id) if charge_id else None
    if isinstance(charge_field, dict):
        amount = int(charge_field.get("amount") or 0)
        currency = charge_field.get("currency") or "usd"
        customer_id = _id(charge_field.get("customer"))
    else:
        amount = charge.amount if charge else row.amount
        currency = charge.currency if charge else row.currency
        customer_id = charge.stripe_customer_id if charge else row.stripe_customer_id
    row.charge_id = charge_id
    row.payment_intent_id = _id(obj.get("payment_intent"))
    row.stripe_customer_id = customer_id
    row.customer_email = _customer_email(uow, customer_id) or row.customer_email
    row.amount = amount or 0
    row.currency = (currency or "usd").lower()
    row.fraud_type = obj.get("fraud_type")
    row.actionable = bool(obj.get("actionable"))
    row.created = from_unix(obj.get("created"))
    row.raw = obj
    row.stripe_updated = observed_at
    batch_rows.add(uow.session, row)
    return row

