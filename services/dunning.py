"""Dunning and SCA recovery, from the invoices the webhook pipeline keeps.

Definitions (shown on the page):
- entered dunning: an invoice's payment failed at least once (payment_failed_at);
- entered SCA: a payment needed the customer's authentication (action_required_at);
- recovered: the invoice was paid afterwards (recovered_at), by a retry of the same card,
  a card update, or the customer's action (3-D Secure);
- still open: entered and not paid yet; its age counts from when it entered.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from db.models import Invoice
from db.models.base import utcnow
from db.repositories import dunning as invoice_rows
from db.session import UnitOfWork
from services.money import format_money, format_totals
from services.percentiles import nearest_rank


@dataclass
class RecoverySummary:
    dunning_entered: int = 0
    dunning_recovered: int = 0
    sca_entered: int = 0
    sca_completed: int = 0
    open_cases: int = 0
    closed_unpaid: int = 0  # voided or marked uncollectible without being paid: neither recovered nor open
    open_amount: dict[str, int] = field(default_factory=dict)
    recovery_rate: float | None = None
    hours_to_recover_median: float | None = None
    hours_to_recover_p90: float | None = None
    by_method: dict[str, int] = field(default_factory=dict)

    @property
    def open_amount_text(self) -> str:
        """What the still-open cases owe, per currency, as a person reads it ("29.00 USD, 1,000 JPY")."""
        return format_totals(self.open_amount, empty="nothing")


def _entered_at(invoice: Invoice) -> datetime | None:
    times = [t for t in (invoice.payment_failed_at, invoice.action_required_at) if t is not None]
    return min(times) if times else None


def _cases(uow: UnitOfWork, since: datetime, until: datetime) -> list[Invoice]:
    with uow:
        return invoice_rows.entered_between(uow, since, until)


def recovery_summary(uow: UnitOfWork, *, since: datetime, until: datetime) -> RecoverySummary:
    """Cases that entered in [since, until] and what became of them."""
    cases = _cases(uow, since, until)
    result = RecoverySummary()
    waits: list[float] = []
    for invoice in cases:
        entered = _entered_at(invoice)
        if invoice.payment_failed_at is not None:
            result.dunning_entered += 1
            result.dunning_recovered += invoice.recovered_at is not None
        if invoice.action_required_at is not None:
            result.sca_entered += 1
            result.sca_completed += invoice.recovered_at is not None
        if invoice.recovered_at is not None and entered is not None:
            waits.append((invoice.recovered_at - entered).total_seconds() / 3600)
            method = invoice.recovery_method or "retry"
            result.by_method[method] = result.by_method.get(method, 0) + 1
        elif invoice.status not in invoice_rows.SETTLED_STATUSES:
            result.open_cases += 1
            result.open_amount[invoice.currency] = result.open_amount.get(invoice.currency, 0) + invoice.amount_due
        else:
            result.closed_unpaid += 1
    if cases:
        result.recovery_rate = round(sum(1 for c in cases if c.recovered_at is not None) / len(cases), 4)
    if waits:
        result.hours_to_recover_median = round(statistics.median(waits), 2)
        result.hours_to_recover_p90 = round(nearest_rank(waits, 90), 2)
    return result


def open_cases(uow: UnitOfWork, *, now: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
    moment = now or utcnow()
    with uow:
        rows = invoice_rows.open_cases(uow, limit=limit)
        return [{
            "invoice": r.id, "customer": r.stripe_customer_id, "plan": r.plan or "unknown",
            "kind": "SCA" if r.action_required_at and not r.payment_failed_at else "dunning",
            "amount": format_money(r.amount_due, r.currency), "attempts": r.attempt_count,
            "age_hours": round((moment - (_entered_at(r) or moment)).total_seconds() / 3600, 1),
        } for r in rows]


def by_plan(uow: UnitOfWork, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
    plans: dict[str, dict[str, Any]] = {}
    for invoice in _cases(uow, since, until):
        entry = plans.setdefault(invoice.plan or "unknown", {"plan": invoice.plan or "unknown", "entered": 0,
                                                             "recovered": 0})
        entry["entered"] += 1
        entry["recovered"] += invoice.recovered_at is not None
    for entry in plans.values():
        entry["recovery_rate"] = round(entry["recovered"] / entry["entered"], 4)
    return sorted(plans.values(), key=lambda e: str(e["plan"]))


def weekly_cohorts(uow: UnitOfWork, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Cases by the ISO week they entered in, with how many recovered."""
    weeks: dict[str, dict[str, Any]] = {}
    for invoice in _cases(uow, since, until):
        entered = _entered_at(invoice)
        if entered is None:
            continue
        week_start = (entered - timedelta(days=entered.weekday())).date().isoformat()
        entry = weeks.setdefault(week_start, {"week": week_start, "entered": 0, "recovered": 0})
        entry["entered"] += 1
        entry["recovered"] += invoice.recovered_at is not None
    return [weeks[k] for k in sorted(weeks)]
