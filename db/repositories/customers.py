"""Customers and the billing objects looked up by them: the global search's bounded lookups
(by id, email prefix, card last4, amount, name), a customer by id, a subscription by its
Stripe id."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select

from db.models import Charge, Customer, Dispute, FraudWarning, Invoice, UserSubscription
from db.session import UnitOfWork

_HIGH = "\uffff"  # sorts after every character a prefix can be followed by


def customer(uow: UnitOfWork, customer_id: str | None) -> Customer | None:
    """One customer by id; None for no id or an unknown one."""
    return uow.session.get(Customer, customer_id) if customer_id else None


def customers_by_ids(uow: UnitOfWork, ids: Iterable[str]) -> dict[str, Customer]:
    return {c.id: c for c in uow.session.execute(select(Customer).where(Customer.id.in_(list(ids)))).scalars()}


def subscription(uow: UnitOfWork, subscription_id: str) -> UserSubscription | None:
    """The billing DB's row of one Stripe subscription."""
    return uow.session.execute(
        select(UserSubscription).where(UserSubscription.stripe_subscription_id == subscription_id)
    ).scalar_one_or_none()


def invoice(uow: UnitOfWork, invoice_id: str) -> Invoice | None:
    return uow.session.get(Invoice, invoice_id)


def charges_with(uow: UnitOfWork, *, charge_id: str | None = None, payment_intent_id: str | None = None,
                 limit: int) -> list[Charge]:
    column, value = (Charge.id, charge_id) if charge_id is not None else (Charge.payment_intent_id, payment_intent_id)
    return list(uow.session.execute(select(Charge).where(column == value).limit(limit)).scalars())


def dispute(uow: UnitOfWork, dispute_id: str) -> Dispute | None:
    return uow.session.get(Dispute, dispute_id)


def fraud_warning(uow: UnitOfWork, warning_id: str) -> FraudWarning | None:
    return uow.session.get(FraudWarning, warning_id)


def customers_by_email_prefix(uow: UnitOfWork, prefix: str, *, limit: int) -> list[Customer]:
    """An index range (`email >= p AND email < p + U+FFFF`): a prefix match a b-tree serves."""
    return list(uow.session.execute(select(Customer).where(Customer.email >= prefix, Customer.email < prefix + _HIGH)
                                    .order_by(Customer.email).limit(limit)).scalars())


def disputes_by_email_prefix(uow: UnitOfWork, prefix: str, *, limit: int) -> list[Dispute]:
    return list(uow.session.execute(select(Dispute).where(
        Dispute.customer_email >= prefix, Dispute.customer_email < prefix + _HIGH).limit(limit)).scalars())


def charges_by_last4(uow: UnitOfWork, last4: str, *, limit: int) -> list[Charge]:
    return list(uow.session.execute(select(Charge).where(Charge.card_last4 == last4)
                                    .order_by(Charge.created.desc()).limit(limit)).scalars())


def _amount_clause(column: Any, currency: Any, value: Decimal, zero_decimal: Iterable[str],
                   three_decimal: Iterable[str]) -> Any:
    """`value` in currency units as minor units by each currency class's exponent (so 29.00
    matches 2900 USD cents and 29 JPY, never 2,900 JPY); None when no class fits."""
    zero, three = sorted(c.lower() for c in zero_decimal), sorted(c.lower() for c in three_decimal)
    clauses = []
    for scale, in_class in ((1, func.lower(currency).in_(zero)), (1000, func.lower(currency).in_(three)),
                            (100, ~func.lower(currency).in_(zero + three))):
        minor = value * scale
        if minor == int(minor):
            clauses.append((column == int(minor)) & in_class)
    return or_(*clauses) if clauses else None


def charges_and_disputes_by_amount(uow: UnitOfWork, value: Decimal, *, zero_decimal: Iterable[str],
                                   three_decimal: Iterable[str], limit: int) -> tuple[list[Charge], list[Dispute]]:
    zero, three = list(zero_decimal), list(three_decimal)
    charge_filter = _amount_clause(Charge.amount, Charge.currency, value, zero, three)
    dispute_filter = _amount_clause(Dispute.amount, Dispute.currency, value, zero, three)
    if charge_filter is None or dispute_filter is None:
        return [], []
    charges = uow.session.execute(select(Charge).where(charge_filter)
                                  .order_by(Charge.created.desc()).limit(limit)).scalars()
    disputes = uow.session.execute(select(Dispute).where(dispute_filter).limit(limit)).scalars()
    return list(charges), list(disputes)


def customers_by_name(uow: UnitOfWork, text: str, *, limit: int) -> list[Customer]:
    """Name or user id containing `text`, case-insensitively (LIKE wildcards in it escaped)."""
    pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(uow.session.execute(select(Customer).where(or_(
        func.lower(Customer.name).like(pattern, escape="\\"),
        func.lower(Customer.user_id).like(pattern, escape="\\"))).limit(limit)).scalars())
