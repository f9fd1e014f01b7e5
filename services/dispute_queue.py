"""The disputes queue and each dispute's context: server-side filtering and paging by
deadline, urgency labels, the detail view's billing history and the dispute-rate series.
Reads only; the actions are in services/disputes.py, the evidence views in
services/dispute_views.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from db.models import (
    Customer,
    Dispute,
    DisputeEvidenceDraft,
    FraudWarning,
    Invoice,
    PlanChange,
    Refund,
    UserSubscription,
)
from db.models.base import utcnow
from db.repositories import customer_history as history
from db.repositories import disputes as disputes_repo
from db.repositories import fraud_warnings as efw_repo
from db.session import UnitOfWork
from services.errors import ConsoleError
from services.money import MoneyError, parse_amount
from services.stripe_gateway import StripeGateway, StripeGatewayError

OPEN_STATUSES = ("warning_needs_response", "needs_response")
ALL_STATUSES = ("warning_needs_response", "needs_response", "warning_under_review", "under_review",
                "warning_closed", "won", "lost")
# The card networks' monitoring programmes and their thresholds: services/dispute_analytics.py.


class DisputeActionError(ConsoleError):
    """A dispute action was refused or failed (also: the dispute asked for does not exist)."""


# --- queue --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DisputeFilter:
    statuses: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    currency: str | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    customer_email: str | None = None
    limit: int = 50
    offset: int = 0


@dataclass
class DisputeQueue:
    rows: list[Dispute]
    total: int
    open_count: int
    overdue: int
    due_24h: int
    due_72h: int
    at_risk: dict[str, int] = field(default_factory=dict)


def amount_bounds(currency: str | None, minimum: float | str | None,
                  maximum: float | str | None) -> tuple[int | None, int | None]:
    """The queue's typed amount bounds (major units, 0 = none) as minor units of the chosen currency.

    A bound means nothing without its currency (10 is 1000 minor units in USD, 10 in JPY), so
    bounds without a currency, or with more decimals than it has, are refused.
    """
    def minor(value: float | str | None) -> int | None:
        text = format(Decimal(str(value or 0)), "f")
        if Decimal(text) == 0:
            return None
        if not (currency or "").strip():
            raise MoneyError("Choose a currency to filter by amount (an amount means nothing without one).")
        return parse_amount(text, currency or "")

    return minor(minimum), minor(maximum)


def urgency(due_by: datetime | None, status: str, now: datetime) -> str:
    if status not in OPEN_STATUSES or due_by is None:
        return ""
    if due_by < now:
        return "overdue"
    if due_by < now + timedelta(hours=24):
        return "due in 24 h"
    if due_by < now + timedelta(hours=72):
        return "due in 72 h"
    return ""


def list_queue(uow: UnitOfWork, flt: DisputeFilter, *, now: datetime | None = None) -> DisputeQueue:
    """Server-side filtering and paging; open disputes by deadline first."""
    moment = now or utcnow()
    where = disputes_repo.queue_filter(statuses=flt.statuses, reasons=flt.reasons, currency=flt.currency,
                                       min_amount=flt.min_amount, max_amount=flt.max_amount,
                                       email_contains=flt.customer_email)
    with uow:
        rows = disputes_repo.queue_page(uow, where, flt.statuses, OPEN_STATUSES, limit=flt.limit,
                                        offset=flt.offset)
        total = disputes_repo.count(uow, where)
        tiles = disputes_repo.queue_tiles(uow, where, OPEN_STATUSES, moment)  # the tiles follow the filters
    return DisputeQueue(rows, total, tiles.open_count, tiles.overdue, tiles.due_24h, tiles.due_72h, tiles.at_risk)


def find(uow: UnitOfWork, dispute_id: str | None) -> Dispute | None:
    """One dispute by id (a linked one may be outside the queue's current filters or page)."""
    if not dispute_id or len(dispute_id) > 255:
        return None
    with uow:
        return disputes_repo.get(uow, dispute_id)


def reasons(uow: UnitOfWork) -> list[str]:
    with uow:
        return disputes_repo.reasons(uow)


# --- detail ------------------------------------------------------------------------------------------
@dataclass
class DisputeContext:
    dispute: Dispute
    charge: dict[str, Any] | None
    charge_error: str | None
    customer: Customer | None
    subscriptions: list[UserSubscription]
    plan_history: list[PlanChange]
    invoices: list[Invoice]
    refunds: list[Refund]
    # Other disputes of this customer (any of their charges).
    same_customer_disputes: list[Dispute]
    fraud_warnings: list[FraudWarning]
    draft: DisputeEvidenceDraft | None
    # Disputes of *other* customers on the same card (fingerprint), with who they are.
    same_card_disputes: list[SameCardDispute] = field(default_factory=list)

    @property
    def other_disputes(self) -> list[Dispute]:
        return self.same_customer_disputes + [d.dispute for d in self.same_card_disputes]


@dataclass(frozen=True)
class SameCardDispute:
    dispute: Dispute
    customer_label: str  # the other customer's name or email, plain text


def get_context(uow: UnitOfWork, dispute_id: str, gateway: StripeGateway | None, *,
                live_charge: Callable[[str], LiveCharge] | None = None) -> DisputeContext:
    """The dispute with its billing-DB context and the charge as Stripe has it now (read through
    `live_charge` when given, e.g. the page's short-lived cache, else `gateway`; the stored copy
    when neither answers)."""
    with uow:
        dispute = disputes_repo.get(uow, dispute_id)
        if dispute is None:
            raise DisputeActionError(f"There is no dispute {dispute_id}.")
        local_charge = history.charge(uow, dispute.charge_id)
        customer_id = dispute.stripe_customer_id
        customer = history.customer(uow, customer_id)
        subscriptions = history.subscriptions_of(uow, customer_id) if customer_id else []
        plan_history = history.plan_changes_of(uow, [s.stripe_subscription_id for s in subscriptions])
        invoices = history.invoices_of(uow, customer_id) if customer_id else []
        charge_ids = history.charge_ids_of(uow, customer_id) if customer_id else []
        refunds = history.refunds_on(uow, charge_ids)
        fingerprint = local_charge.card_fingerprint if local_charge else None
        same_card = history.charge_ids_with_fingerprint(uow, fingerprint) if fingerprint else []
        related = set(charge_ids) | set(same_card)
        same_customer = (disputes_repo.of_customer(uow, customer_id, charge_ids, excluding=dispute_id)
                         if customer_id else [])
        mine = {d.id for d in same_customer} | {dispute_id}
        same_card_rows = [d for d in disputes_repo.on_charges(uow, same_card)
                          if d.id not in mine and (customer_id is None or d.stripe_customer_id != customer_id)]
        others = history.customers(uow, {d.stripe_customer_id or "" for d in same_card_rows})
        same_card_disputes = [SameCardDispute(d, _customer_label(others.get(d.stripe_customer_id or ""), d))
                              for d in same_card_rows]
        fraud_warnings = efw_repo.on_charges(uow, related | {dispute.charge_id or ""})
        draft = disputes_repo.draft(uow, dispute_id)
    charge: dict[str, Any] | None = None
    charge_error = None
    if dispute.charge_id and (live_charge is not None or gateway is not None):
        charge, charge_error = (live_charge or partial(read_live_charge, gateway))(dispute.charge_id)
    if charge is None and local_charge is not None:
        charge = dict(local_charge.raw or {})
    return DisputeContext(dispute, charge, charge_error, customer, subscriptions, plan_history, invoices, refunds,
                          same_customer, fraud_warnings, draft, same_card_disputes)


# (the charge as Stripe returned it, or None with Stripe's words why not)
LiveCharge = tuple[dict[str, Any] | None, str | None]


def read_live_charge(gateway: StripeGateway | None, charge_id: str) -> LiveCharge:
    """The charge read live from Stripe, or None and why (the page then shows the stored copy)."""
    if gateway is None:
        return None, None
    try:
        return gateway.retrieve_charge(charge_id), None
    except StripeGatewayError as error:
        return None, error.message


def _customer_label(customer: Customer | None, dispute: Dispute) -> str:
    if customer is not None and (customer.name or customer.email):
        return " ".join(p for p in (customer.name, f"<{customer.email}>" if customer.email else None) if p)
    return dispute.customer_email or dispute.stripe_customer_id or "unknown customer"



# --- dispute rate ------------------------------------------------------------------------------------
def dispute_rate_series(uow: UnitOfWork, *, days: int = 30, now: datetime | None = None,
                        window_days: int = 30) -> list[dict[str, Any]]:
    """For each of the last `days` days: disputes / charges over the trailing `window_days`
    (two grouped queries, whole days back from `now`)."""
    moment = now or utcnow()
    with uow:
        disputes_by_day = disputes_repo.created_by_day(uow, now=moment, days=days - 1 + window_days)
        charges_by_day = history.succeeded_charges_by_day(uow, now=moment, days=days - 1 + window_days)
    series = []
    for back in range(days - 1, -1, -1):
        window = range(back, back + window_days)
        disputes = sum(disputes_by_day.get(day, 0) for day in window)
        charges = sum(charges_by_day.get(day, 0) for day in window)
        end = moment - timedelta(days=back)
        series.append({"day": end.date().isoformat(), "disputes": disputes, "charges": charges,
                       "rate": (disputes / charges) if charges else 0.0})
    return series
