"""A customer's payment history as the disputes and early-fraud-warning pages read it: charges,
customers, invoices, subscriptions and plan changes, refunds, the payments that share a card, an
email or an IP, and the payment counts the dispute rates divide by.

Every function takes the open UnitOfWork and never commits (the service owns the transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from db.models import Charge, Customer, Invoice, PlanChange, Refund, UserSubscription
from db.repositories._days import counts_by_day
from db.session import UnitOfWork


def charge(uow: UnitOfWork, charge_id: str | None) -> Charge | None:
    return uow.session.get(Charge, charge_id) if charge_id else None


def customer(uow: UnitOfWork, customer_id: str | None) -> Customer | None:
    return uow.session.get(Customer, customer_id) if customer_id else None


def invoice(uow: UnitOfWork, invoice_id: str | None) -> Invoice | None:
    return uow.session.get(Invoice, invoice_id) if invoice_id else None


def refund(uow: UnitOfWork, refund_id: str | None) -> Refund | None:
    return uow.session.get(Refund, refund_id) if refund_id else None


def customers(uow: UnitOfWork, customer_ids: Iterable[str]) -> dict[str, Customer]:
    ids = {i for i in customer_ids if i}
    if not ids:
        return {}
    return {c.id: c for c in uow.session.execute(select(Customer).where(Customer.id.in_(ids))).scalars()}


def invoices(uow: UnitOfWork, invoice_ids: Iterable[str]) -> dict[str, Invoice]:
    ids = {i for i in invoice_ids if i}
    if not ids:
        return {}
    return {i.id: i for i in uow.session.execute(select(Invoice).where(Invoice.id.in_(ids))).scalars()}


# --- one customer's history ----------------------------------------------------------------------
def subscriptions_of(uow: UnitOfWork, customer_id: str) -> list[UserSubscription]:
    return list(uow.session.execute(
        select(UserSubscription).where(UserSubscription.stripe_customer_id == customer_id)).scalars())


def plan_changes_of(uow: UnitOfWork, subscription_ids: Iterable[str]) -> list[PlanChange]:
    ids = list(subscription_ids)
    if not ids:
        return []
    return list(uow.session.execute(
        select(PlanChange).where(PlanChange.stripe_subscription_id.in_(ids)).order_by(PlanChange.at)).scalars())


def invoices_of(uow: UnitOfWork, customer_id: str) -> list[Invoice]:
    return list(uow.session.execute(
        select(Invoice).where(Invoice.stripe_customer_id == customer_id).order_by(Invoice.created)).scalars())


def charge_ids_of(uow: UnitOfWork, customer_id: str) -> list[str]:
    return list(uow.session.execute(select(Charge.id).where(Charge.stripe_customer_id == customer_id)).scalars())


def refunds_on(uow: UnitOfWork, charge_ids: Iterable[str]) -> list[Refund]:
    ids = list(charge_ids)
    if not ids:
        return []
    return list(uow.session.execute(select(Refund).where(Refund.charge_id.in_(ids))).scalars())


def refunds_of_charge(uow: UnitOfWork, charge_id: str) -> list[Refund]:
    """Every refund on the charge, newest first."""
    return list(uow.session.execute(
        select(Refund).where(Refund.charge_id == charge_id).order_by(Refund.created.desc(), Refund.id)).scalars())


def prior_paid_charges(uow: UnitOfWork, customer_id: str, *, excluding: str) -> list[Charge]:
    """The customer's other succeeded, paid, undisputed charges of a positive amount, newest first."""
    return list(uow.session.execute(
        select(Charge).where(Charge.stripe_customer_id == customer_id, Charge.id != excluding,
                             Charge.status == "succeeded", Charge.paid.is_(True), Charge.disputed.is_(False),
                             Charge.amount > 0).order_by(Charge.created.desc())).scalars())


# --- payments that share something ----------------------------------------------------------------
def charge_ids_with_fingerprint(uow: UnitOfWork, fingerprint: str, *, limit: int | None = None) -> list[str]:
    """Charges on the same card (fingerprint), newest first."""
    query = select(Charge.id).where(Charge.card_fingerprint == fingerprint)
    if limit is not None:
        query = query.order_by(Charge.created.desc()).limit(limit)
    return list(uow.session.execute(query).scalars())


def charge_ids_with_email(uow: UnitOfWork, email: str, *, limit: int) -> list[str]:
    """Charges of the customers with this email, newest first. Index lookups: the email as stored
    and lowercased (Stripe keeps the case the customer typed)."""
    # The customers first: as a subquery, SQLite walks every charge by date looking for them.
    customers_ = list(uow.session.execute(select(Customer.id).where(Customer.email.in_({email, email.lower()})))
                      .scalars())
    if not customers_:
        return []
    return list(uow.session.execute(select(Charge.id).where(Charge.stripe_customer_id.in_(customers_))
                                    .order_by(Charge.created.desc()).limit(limit)).scalars())


def charge_ids_with_ip(uow: UnitOfWork, ip: str, *, limit: int) -> list[str]:
    """Charges whose `metadata.ip` or whose customer's is this IP, newest first of each. Two index
    lookups rather than one OR, which PostgreSQL answers with a scan by date."""
    same_ip_customers = select(Customer.id).where(Customer.metadata_ip == ip)
    on_charge = uow.session.execute(select(Charge.id).where(Charge.metadata_ip == ip)
                                    .order_by(Charge.created.desc()).limit(limit)).scalars()
    on_customer = uow.session.execute(select(Charge.id).where(Charge.stripe_customer_id.in_(same_ip_customers))
                                      .order_by(Charge.created.desc()).limit(limit)).scalars()
    return [*on_charge, *on_customer]


def charges_with_email(uow: UnitOfWork, charge_ids: Iterable[str]) -> list[tuple[Charge, str | None]]:
    """These charges, newest first, each with its customer's email."""
    return [(c, email) for c, email in uow.session.execute(
        select(Charge, Customer.email).outerjoin(Customer, Customer.id == Charge.stripe_customer_id)
        .where(Charge.id.in_(list(charge_ids))).order_by(Charge.created.desc())).all()]


# --- the denominators of dispute rates -------------------------------------------------------------------
def succeeded_charges_by_day(uow: UnitOfWork, *, now: datetime, days: int) -> dict[int, int]:
    """Succeeded charges per whole day before `now`, for `days` days (see db/repositories/_days.py)."""
    return counts_by_day(uow, Charge.created, Charge.status == "succeeded", now=now, days=days)


def succeeded_payments(uow: UnitOfWork, brand: str, since: datetime, until: datetime) -> int:
    """Succeeded charges of a card brand (lowercase) in [since, until)."""
    return int(uow.session.execute(select(func.count()).select_from(Charge).where(
        func.lower(Charge.card_brand) == brand, Charge.status == "succeeded", Charge.created >= since,
        Charge.created < until)).scalar() or 0)


def card_brands(uow: UnitOfWork, charge_ids: Iterable[str]) -> dict[str, str | None]:
    ids = [i for i in charge_ids if i]
    if not ids:
        return {}
    return {cid: brand for cid, brand in uow.session.execute(
        select(Charge.id, Charge.card_brand).where(Charge.id.in_(ids))).all()}


# --- card testing ----------------------------------------------------------------------------------
def failed_charge_raws(uow: UnitOfWork, since: datetime, until: datetime, *, limit: int) -> list[dict[str, Any]]:
    """The Stripe objects of failed charges made in [since, until), at most `limit`."""
    return [raw or {} for raw in uow.session.execute(
        select(Charge.raw).where(Charge.status == "failed", Charge.created >= since, Charge.created < until)
        .limit(limit)).scalars()]


def small_charges_by_currency(uow: UnitOfWork, since: datetime, until: datetime, *, max_amount: int) -> dict[str, int]:
    """Charges of more than 0 and at most `max_amount` minor units made in [since, until), per currency."""
    return {c: int(n) for c, n in uow.session.execute(
        select(Charge.currency, func.count()).where(Charge.amount <= max_amount, Charge.amount > 0,
                                                    Charge.created >= since, Charge.created < until)
        .group_by(Charge.currency)).all()}
