"""The disputes queue and each dispute's context: server-side filtering and paging by
deadline, urgency labels, the detail view's billing history and the dispute-rate series.
Reads only; the actions are in services/disputes.py, the evidence views in
services/dispute_views.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select

from db.models import (
    Charge,
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
    conditions: list[ColumnElement[bool]] = []
    if flt.statuses:
        conditions.append(Dispute.status.in_(flt.statuses))
    if flt.reasons:
        conditions.append(Dispute.reason.in_(flt.reasons))
    if flt.currency:
        conditions.append(Dispute.currency == flt.currency.lower())
    if flt.min_amount is not None:
        conditions.append(Dispute.amount >= flt.min_amount)
    if flt.max_amount is not None:
        conditions.append(Dispute.amount <= flt.max_amount)
    if flt.customer_email:
        conditions.append(Dispute.customer_email.ilike(f"%{flt.customer_email.strip()}%"))
    where = and_(*conditions) if conditions else and_(True)
    is_open = Dispute.status.in_(OPEN_STATUSES)
    with uow:
        rows = list(uow.session.execute(
            select(Dispute).where(where)
            .order_by(case((is_open, 0), else_=1), Dispute.due_by.asc(), Dispute.id)
            .limit(flt.limit).offset(flt.offset)
        ).scalars())
        total = uow.session.execute(select(func.count()).select_from(Dispute).where(where)).scalar() or 0
        stats = uow.session.execute(
            select(
                func.count(),
                func.sum(case((Dispute.due_by < moment, 1), else_=0)),
                func.sum(case((and_(Dispute.due_by >= moment, Dispute.due_by < moment + timedelta(hours=24)), 1),
                              else_=0)),
                func.sum(case((and_(Dispute.due_by >= moment, Dispute.due_by < moment + timedelta(hours=72)), 1),
                              else_=0)),
            ).where(is_open, where)  # the tiles follow the page's filters
        ).one()
        at_risk = dict(uow.session.execute(
            select(Dispute.currency, func.sum(Dispute.amount)).where(is_open, where).group_by(Dispute.currency)
        ).all())
    return DisputeQueue(rows, int(total), int(stats[0] or 0), int(stats[1] or 0), int(stats[2] or 0),
                        int(stats[3] or 0), {c: int(a or 0) for c, a in at_risk.items()})


def find(uow: UnitOfWork, dispute_id: str | None) -> Dispute | None:
    """One dispute by id (a linked one may be outside the queue's current filters or page)."""
    if not dispute_id or len(dispute_id) > 255:
        return None
    with uow:
        return uow.session.get(Dispute, dispute_id)


def reasons(uow: UnitOfWork) -> list[str]:
    with uow:
        return [r for r in uow.session.execute(select(Dispute.reason).distinct().order_by(Dispute.reason))
                .scalars() if r]


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


def get_context(uow: UnitOfWork, dispute_id: str, gateway: StripeGateway | None) -> DisputeContext:
    charge: dict[str, Any] | None = None
    charge_error = None
    with uow:
        dispute = uow.session.get(Dispute, dispute_id)
        if dispute is None:
            raise DisputeActionError(f"There is no dispute {dispute_id}.")
        local_charge = uow.session.get(Charge, dispute.charge_id) if dispute.charge_id else None
        customer_id = dispute.stripe_customer_id
        customer = uow.session.get(Customer, customer_id) if customer_id else None
        subscriptions = list(uow.session.execute(
            select(UserSubscription).where(UserSubscription.stripe_customer_id == customer_id)).scalars()) \
            if customer_id else []
        sub_ids = [s.stripe_subscription_id for s in subscriptions]
        plan_history = list(uow.session.execute(
            select(PlanChange).where(PlanChange.stripe_subscription_id.in_(sub_ids)).order_by(PlanChange.at))
            .scalars()) if sub_ids else []
        invoices = list(uow.session.execute(
            select(Invoice).where(Invoice.stripe_customer_id == customer_id).order_by(Invoice.created)).scalars()) \
            if customer_id else []
        charge_ids = list(uow.session.execute(
            select(Charge.id).where(Charge.stripe_customer_id == customer_id)).scalars()) if customer_id else []
        refunds = list(uow.session.execute(select(Refund).where(Refund.charge_id.in_(charge_ids))).scalars()) \
            if charge_ids else []
        fingerprint = local_charge.card_fingerprint if local_charge else None
        same_card = list(uow.session.execute(
            select(Charge.id).where(Charge.card_fingerprint == fingerprint)).scalars()) if fingerprint else []
        related = set(charge_ids) | set(same_card)
        same_customer = list(uow.session.execute(
            select(Dispute).where(Dispute.id != dispute_id, or_(
                Dispute.charge_id.in_(charge_ids), Dispute.stripe_customer_id == customer_id))
            .order_by(Dispute.created, Dispute.id)).scalars()) if customer_id else []
        mine = {d.id for d in same_customer} | {dispute_id}
        same_card_rows = [d for d in uow.session.execute(
            select(Dispute).where(Dispute.charge_id.in_(same_card)).order_by(Dispute.created, Dispute.id))
            .scalars() if d.id not in mine and (customer_id is None or d.stripe_customer_id != customer_id)] \
            if same_card else []
        others = {c.id: c for c in uow.session.execute(select(Customer).where(
            Customer.id.in_({d.stripe_customer_id for d in same_card_rows if d.stripe_customer_id}))).scalars()}
        same_card_disputes = [SameCardDispute(d, _customer_label(others.get(d.stripe_customer_id or ""), d))
                              for d in same_card_rows]
        fraud_warnings = list(uow.session.execute(
            select(FraudWarning).where(FraudWarning.charge_id.in_(related | {dispute.charge_id or ""})))
            .scalars())
        draft = uow.session.execute(
            select(DisputeEvidenceDraft).where(DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()
    if gateway is not None and dispute.charge_id:
        try:
            charge = gateway.retrieve_charge(dispute.charge_id)
        except StripeGatewayError as error:
            charge_error = error.message
    if charge is None and local_charge is not None:
        charge = dict(local_charge.raw or {})
    return DisputeContext(dispute, charge, charge_error, customer, subscriptions, plan_history, invoices, refunds,
                          same_customer, fraud_warnings, draft, same_card_disputes)


def _customer_label(customer: Customer | None, dispute: Dispute) -> str:
    if customer is not None and (customer.name or customer.email):
        return " ".join(p for p in (customer.name, f"<{customer.email}>" if customer.email else None) if p)
    return dispute.customer_email or dispute.stripe_customer_id or "unknown customer"



# --- dispute rate ------------------------------------------------------------------------------------
def dispute_rate_series(uow: UnitOfWork, *, days: int = 30, now: datetime | None = None,
                        window_days: int = 30) -> list[dict[str, Any]]:
    """For each of the last `days` days: disputes / charges over the trailing `window_days`."""
    moment = now or utcnow()
    series = []
    with uow:
        for back in range(days - 1, -1, -1):
            end = moment - timedelta(days=back)
            start = end - timedelta(days=window_days)
            disputes = uow.session.execute(select(func.count()).select_from(Dispute).where(
                Dispute.created >= start, Dispute.created < end)).scalar() or 0
            charges = uow.session.execute(select(func.count()).select_from(Charge).where(
                Charge.created >= start, Charge.created < end, Charge.status == "succeeded")).scalar() or 0
            series.append({"day": end.date().isoformat(), "disputes": int(disputes), "charges": int(charges),
                           "rate": (disputes / charges) if charges else 0.0})
    return series
