"""Global search over the billing DB: customers, subscriptions, invoices, charges, disputes
and early fraud warnings, by id, email, name, card last4 or amount.

Every lookup is bounded (LIMIT) and, where the query allows, goes through an index: ids by
primary or unique key, emails by an index range (`email >= q AND email < q + U+FFFF`, a
prefix match both SQLite and PostgreSQL serve from a b-tree). Names, last4 and amounts
scan their table, bounded by the limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, or_, select

from db.models import Charge, Customer, Dispute, FraudWarning, Invoice, UserSubscription
from db.session import UnitOfWork
from services.errors import ConsoleError
from services.money import THREE_DECIMAL, ZERO_DECIMAL, format_money

MAX_QUERY_CHARS = 200
DEFAULT_LIMIT = 20
_ID = re.compile(r"^[a-z]+_[A-Za-z0-9_]+$")
_LAST4 = re.compile(r"^\d{4}$")
# The start of an email as people type it: "ada@exa", "june.70", "ops+billing".
_EMAIL_PREFIX = re.compile(r"^[\w.+-]+(?:@[\w.-]*)?$")
_AMOUNT = re.compile(r"^\d{1,9}(?:[.,]\d{1,3})?$")
_HIGH = "\uffff"  # sorts after every character a prefix can be followed by

# Stripe id prefixes -> the kind of object they name.
ID_KINDS = {"cus": "customer", "sub": "subscription", "in": "invoice", "ch": "charge", "py": "charge",
            "dp": "dispute", "du": "dispute", "issfr": "fraud_warning", "pi": "payment"}
# Where each kind opens (page url_path) and under which query parameter the id goes.
OPENS = {"customer": ("plan-changes", "customer"), "subscription": ("plan-changes", "subscription"),
         "invoice": ("dunning", "invoice"), "charge": ("fraud-warnings", "charge"),
         "dispute": ("disputes", "dispute"), "fraud_warning": ("fraud-warnings", "warning")}


class SearchError(ConsoleError, ValueError):
    """The query cannot be searched; the message is safe to show."""


@dataclass(frozen=True)
class SearchHit:
    kind: str
    id: str
    title: str  # customer-controlled parts stay plain text where shown
    detail: str
    page: str = field(default="")
    query_params: dict[str, str] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        return {"kind": self.kind.replace("_", " "), "id": self.id, "title": self.title, "detail": self.detail}


def _hit(kind: str, object_id: str, title: str, detail: str) -> SearchHit:
    page, param = OPENS.get(kind, ("", ""))
    return SearchHit(kind, object_id, title, detail, page, {param: object_id} if param else {})


def _customer_hit(row: Customer) -> SearchHit:
    return _hit("customer", row.id, row.name or row.email or row.id, row.email or "")


def _by_id(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    session = uow.session
    kind = ID_KINDS.get(query.split("_", 1)[0])
    hits: list[SearchHit] = []
    if kind == "customer":
        hits += [_customer_hit(c) for c in session.execute(select(Customer).where(Customer.id == query)).scalars()]
    elif kind == "subscription":
        for s in session.execute(select(UserSubscription).where(
                UserSubscription.stripe_subscription_id == query)).scalars():
            hits.append(_hit("subscription", s.stripe_subscription_id, f"{s.plan or '?'} {s.interval or ''}".strip(),
                             f"{s.status} · customer {s.stripe_customer_id}"))
    elif kind == "invoice":
        hits += [_invoice_hit(i) for i in session.execute(select(Invoice).where(Invoice.id == query)).scalars()]
    elif kind in ("charge", "payment"):
        column = Charge.id if kind == "charge" else Charge.payment_intent_id
        hits += [_charge_hit(c) for c in session.execute(select(Charge).where(column == query).limit(limit)).scalars()]
    elif kind == "dispute":
        hits += [_dispute_hit(d) for d in session.execute(select(Dispute).where(Dispute.id == query)).scalars()]
    elif kind == "fraud_warning":
        hits += [_efw_hit(w) for w in session.execute(select(FraudWarning).where(FraudWarning.id == query)).scalars()]
    return hits


def _invoice_hit(row: Invoice) -> SearchHit:
    return _hit("invoice", row.id, f"{format_money(row.amount_due, row.currency)} · {row.status or '?'}",
                f"customer {row.stripe_customer_id or '?'}")


def _charge_hit(row: Charge) -> SearchHit:
    card = f"{row.card_brand or 'card'} ····{row.card_last4}" if row.card_last4 else "no card"
    return _hit("charge", row.id, f"{format_money(row.amount, row.currency)} · {card}",
                f"{row.status or '?'} · customer {row.stripe_customer_id or '?'}")


def _dispute_hit(row: Dispute) -> SearchHit:
    return _hit("dispute", row.id, f"{format_money(row.amount, row.currency)} · {row.reason or '?'}",
                f"{row.status} · {row.customer_email or row.stripe_customer_id or '?'}")


def _efw_hit(row: FraudWarning) -> SearchHit:
    return _hit("fraud_warning", row.id, f"{format_money(row.amount, row.currency)} · charge {row.charge_id}",
                f"{row.status} · {row.customer_email or row.stripe_customer_id or '?'}")


def _by_email(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    lowered = query.lower()
    rows = uow.session.execute(select(Customer).where(Customer.email >= lowered, Customer.email < lowered + _HIGH)
                               .order_by(Customer.email).limit(limit)).scalars()
    hits = [_customer_hit(c) for c in rows]
    if lowered != query:  # an email stored as typed (mixed case) is found too
        rows = uow.session.execute(select(Customer).where(Customer.email >= query, Customer.email < query + _HIGH)
                                   .order_by(Customer.email).limit(limit)).scalars()
        hits += [_customer_hit(c) for c in rows if c.id not in {h.id for h in hits}]
    disputes = uow.session.execute(select(Dispute).where(
        Dispute.customer_email >= lowered, Dispute.customer_email < lowered + _HIGH).limit(limit)).scalars()
    return hits + [_dispute_hit(d) for d in disputes]


def _by_last4(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    rows = uow.session.execute(select(Charge).where(Charge.card_last4 == query)
                               .order_by(Charge.created.desc()).limit(limit)).scalars()
    return [_charge_hit(c) for c in rows]


def _amount_filter(column: Any, currency: Any, query: str) -> Any:
    """`query` read as an amount in currency units: minor units by each currency class's exponent
    (so 29.00 matches 2900 USD cents and 29 JPY, never 2,900 JPY)."""
    try:
        value = Decimal(query.replace(",", "."))
    except InvalidOperation:
        return None
    zero, three = sorted(c.lower() for c in ZERO_DECIMAL), sorted(c.lower() for c in THREE_DECIMAL)
    clauses = []
    for scale, in_class in ((1, func.lower(currency).in_(zero)), (1000, func.lower(currency).in_(three)),
                            (100, ~func.lower(currency).in_(zero + three))):
        minor = value * scale
        if minor == int(minor):
            clauses.append((column == int(minor)) & in_class)
    return or_(*clauses) if clauses else None


def _by_amount(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    charge_filter = _amount_filter(Charge.amount, Charge.currency, query)
    dispute_filter = _amount_filter(Dispute.amount, Dispute.currency, query)
    if charge_filter is None or dispute_filter is None:
        return []
    charges = uow.session.execute(select(Charge).where(charge_filter)
                                  .order_by(Charge.created.desc()).limit(limit)).scalars()
    disputes = uow.session.execute(select(Dispute).where(dispute_filter).limit(limit)).scalars()
    return [_charge_hit(c) for c in charges] + [_dispute_hit(d) for d in disputes]


def _by_name(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = uow.session.execute(select(Customer).where(or_(
        func.lower(Customer.name).like(pattern, escape="\\"),
        func.lower(Customer.user_id).like(pattern, escape="\\"))).limit(limit)).scalars()
    return [_customer_hit(c) for c in rows]


def search(uow: UnitOfWork, query: str, *, limit: int = DEFAULT_LIMIT) -> list[SearchHit]:
    """Hits for one query, best guesses first: an id, then email, last4, amount, name."""
    text = " ".join((query or "").split())
    if not text:
        return []
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"Search for at most {MAX_QUERY_CHARS} characters.")
    limit = max(1, min(limit, 100))
    with uow:
        hits: list[SearchHit] = []
        if _ID.match(text) and text.split("_", 1)[0] in ID_KINDS:
            hits += _by_id(uow, text, limit)
        if "@" in text or (_EMAIL_PREFIX.match(text) and not text.isdigit()):
            hits += _by_email(uow, text, limit)
        if _LAST4.match(text):
            hits += _by_last4(uow, text, limit)
        if _AMOUNT.match(text):
            hits += _by_amount(uow, text, limit)
        if not hits and len(text) >= 2:
            hits += _by_name(uow, text, limit)
        seen: set[tuple[str, str]] = set()
        unique = []
        for hit in hits:
            if (hit.kind, hit.id) not in seen:
                seen.add((hit.kind, hit.id))
                unique.append(hit)
        return unique[:limit]
