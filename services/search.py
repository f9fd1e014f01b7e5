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

from db.models import Charge, Customer, Dispute, FraudWarning, Invoice
from db.repositories import customers as customer_rows
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
    kind = ID_KINDS.get(query.split("_", 1)[0])
    hits: list[SearchHit] = []
    if kind == "customer":
        hits += [_customer_hit(c) for c in [customer_rows.customer(uow, query)] if c is not None]
    elif kind == "subscription":
        s = customer_rows.subscription(uow, query)
        if s is not None:
            hits.append(_hit("subscription", s.stripe_subscription_id, f"{s.plan or '?'} {s.interval or ''}".strip(),
                             f"{s.status} · customer {s.stripe_customer_id}"))
    elif kind == "invoice":
        hits += [_invoice_hit(i) for i in [customer_rows.invoice(uow, query)] if i is not None]
    elif kind in ("charge", "payment"):
        charges = (customer_rows.charges_with(uow, charge_id=query, limit=limit) if kind == "charge"
                   else customer_rows.charges_with(uow, payment_intent_id=query, limit=limit))
        hits += [_charge_hit(c) for c in charges]
    elif kind == "dispute":
        hits += [_dispute_hit(d) for d in [customer_rows.dispute(uow, query)] if d is not None]
    elif kind == "fraud_warning":
        hits += [_efw_hit(w) for w in [customer_rows.fraud_warning(uow, query)] if w is not None]
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
    hits = [_customer_hit(c) for c in customer_rows.customers_by_email_prefix(uow, lowered, limit=limit)]
    if lowered != query:  # an email stored as typed (mixed case) is found too
        found = {h.id for h in hits}
        hits += [_customer_hit(c) for c in customer_rows.customers_by_email_prefix(uow, query, limit=limit)
                 if c.id not in found]
    return hits + [_dispute_hit(d) for d in customer_rows.disputes_by_email_prefix(uow, lowered, limit=limit)]


def _by_last4(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    return [_charge_hit(c) for c in customer_rows.charges_by_last4(uow, query, limit=limit)]


def _by_amount(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    """`query` read as an amount in currency units (minor units by each currency's exponent)."""
    try:
        value = Decimal(query.replace(",", "."))
    except InvalidOperation:
        return []
    charges, disputes = customer_rows.charges_and_disputes_by_amount(
        uow, value, zero_decimal=ZERO_DECIMAL, three_decimal=THREE_DECIMAL, limit=limit)
    return [_charge_hit(c) for c in charges] + [_dispute_hit(d) for d in disputes]


def _by_name(uow: UnitOfWork, query: str, limit: int) -> list[SearchHit]:
    return [_customer_hit(c) for c in customer_rows.customers_by_name(uow, query, limit=limit)]


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
        stripe_id = bool(_ID.match(text)) and text.split("_", 1)[0] in ID_KINDS
        if stripe_id:
            hits += _by_id(uow, text, limit)
        if "@" in text or (_EMAIL_PREFIX.match(text) and not text.isdigit()):
            hits += _by_email(uow, text, limit)
        if _LAST4.match(text):
            hits += _by_last4(uow, text, limit)
        if _AMOUNT.match(text):
            hits += _by_amount(uow, text, limit)
        # Names too whenever there is room: "ada" is an email prefix and a first name, and the person
        # typing it wants both (a name scan costs < 30 ms p95 at 100k customers, benchmarks/search.py).
        if len(text) >= 2 and len(hits) < limit and (not hits or not (stripe_id or text.isdigit())):
            hits += _by_name(uow, text, limit)
        seen: set[tuple[str, str]] = set()
        unique = []
        for hit in hits:
            if (hit.kind, hit.id) not in seen:
                seen.add((hit.kind, hit.id))
                unique.append(hit)
        return unique[:limit]
