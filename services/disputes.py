"""The disputes workspace: a queue by deadline, each dispute's context, evidence drafted
from the billing DB, staged to Stripe any number of times (submit=false) and submitted
exactly once (submit=true), or accepted. Local checks run before any Stripe call."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update

from db.models import (
    AuditLog,
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
from db.session import UnitOfWork, rows_affected
from services import audit, evidence_files, stripe_mapping
from services import compelling_evidence as ce
from services import dispute_evidence as ev
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError
from services.money import MoneyError, format_money, parse_amount
from services.stripe_gateway import StripeGateway, StripeGatewayError

OPEN_STATUSES = ("warning_needs_response", "needs_response")
ALL_STATUSES = ("warning_needs_response", "needs_response", "warning_under_review", "under_review",
                "warning_closed", "won", "lost")
# The card networks' monitoring programmes and their thresholds: services/dispute_analytics.py.


class DisputeActionError(ConsoleError):
    """A dispute action was refused or failed."""


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


def auto_draft(context: DisputeContext, settings: Settings) -> dict[str, str]:
    """A first version of the evidence from what the billing DB knows."""
    customer = context.customer
    charge = context.charge or {}
    draft: dict[str, str] = {}
    if customer is not None:
        draft["customer_name"] = customer.name or ""
        draft["customer_email_address"] = customer.email or ""
    purchase_ip = (charge.get("metadata") or {}).get("ip") or (customer.raw.get("metadata", {}).get("ip")
                                                               if customer else None)
    if purchase_ip:
        draft["customer_purchase_ip"] = str(purchase_ip)
    billing = (charge.get("billing_details") or {}).get("address")
    if billing:
        draft["billing_address"] = ", ".join(str(v) for v in billing.values() if v)
    subscription = context.subscriptions[0] if context.subscriptions else None
    if subscription is not None:
        plan = subscription.plan or "subscription"
        draft["product_description"] = (f"{plan.title()} plan ({subscription.interval or 'recurring'}) of our "
                                        "software service, billed automatically until cancelled.")
        if subscription.current_period_start and subscription.current_period_end:
            draft["service_date"] = (f"{subscription.current_period_start:%Y-%m-%d} to "
                                     f"{subscription.current_period_end:%Y-%m-%d}")
        if not subscription.canceled_at:
            draft["cancellation_rebuttal"] = ("The customer had not cancelled the subscription before this charge; "
                                              "it was active for the billed period.")
    draft["refund_policy_disclosure"] = settings.refund_policy_text
    draft["cancellation_policy_disclosure"] = settings.cancellation_policy_text
    timeline = [f"{i.created:%Y-%m-%d} invoice {i.id}: {format_money(i.amount_due, i.currency)} {i.status}"
                for i in context.invoices if i.created]
    timeline += [f"refund {r.id}: {format_money(r.amount, r.currency)} ({r.reason or 'no reason'})"
                 for r in context.refunds]
    if timeline:
        draft["uncategorized_text"] = "Billing history:\n" + "\n".join(timeline)
    return {k: v for k, v in draft.items() if v}


# --- actions ---------------------------------------------------------------------------------------
def _fresh(uow: UnitOfWork, dispute: dict[str, Any]) -> None:
    stored = uow.session.get(Dispute, dispute["id"])
    stripe_mapping.upsert_dispute(uow, dispute, observed_at=stripe_mapping.fresh_observed_at(stored))


def _check_open(dispute: Dispute, now: datetime) -> None:
    if dispute.status not in OPEN_STATUSES or dispute.submitted_at is not None or dispute.accepted_at is not None:
        raise DisputeActionError(f"This dispute is {dispute.status.replace('_', ' ')}; its evidence can no longer "
                                 "change.")
    if dispute.due_by is not None and dispute.due_by < now:
        raise DisputeActionError(f"The evidence was due by {dispute.due_by:%Y-%m-%d %H:%M} UTC; Stripe no longer "
                                 "accepts it.")


def _check_open_audited(uow: UnitOfWork, dispute: Dispute, now: datetime, *, actor: str, action: str) -> None:
    """`_check_open`, leaving a `refused` audit row when it refuses (e.g. an overdue dispute)."""
    try:
        _check_open(dispute, now)
    except DisputeActionError as error:
        if dispute.submitted_at is not None or dispute.accepted_at is not None:
            raise  # a second click racing the first: the claim below refuses that one, unaudited as before
        audit.record(uow, actor=actor, action=action, target=dispute.id, result="refused", error=error.message,
                     details={"due_by": dispute.due_by.isoformat() if dispute.due_by else None,
                              "status": dispute.status})
        uow.commit()
        raise


def read_only_reason(dispute: Dispute, now: datetime) -> str | None:
    """Why the evidence form cannot change, in words for the top of the page; None while it can."""
    if dispute.submitted_at is not None:
        return (f"Read-only: evidence was submitted {dispute.submitted_at:%Y-%m-%d %H:%M} UTC"
                + (f" by {dispute.submitted_by}" if dispute.submitted_by else "") + ".")
    if dispute.accepted_at is not None:
        return f"Read-only: this dispute was accepted {dispute.accepted_at:%Y-%m-%d %H:%M} UTC."
    if dispute.status not in OPEN_STATUSES:
        return f"Read-only: this dispute is {dispute.status.replace('_', ' ')}; its evidence can no longer change."
    if dispute.due_by is not None and dispute.due_by < now:
        return (f"Overdue, read-only: the evidence was due by {dispute.due_by:%Y-%m-%d %H:%M} UTC and Stripe no "
                "longer accepts evidence for it. Nothing can be saved or submitted.")
    return None


def _clean(fields: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).strip() for k, v in fields.items() if v is not None and str(v).strip()}


@privileged("disputes.save_draft")
def save_draft(dispute_id: str, fields: dict[str, Any], *, actor: str, settings: Settings, uow: UnitOfWork,
               gateway: StripeGateway) -> DisputeEvidenceDraft:
    """Keep the draft locally and stage it at Stripe with submit=false (any number of times)."""
    text = _clean(fields)
    problem = ev.check_text(text)
    with uow:
        dispute = uow.session.get(Dispute, dispute_id)
        if dispute is None:
            raise DisputeActionError(f"There is no dispute {dispute_id}.")
        _check_open_audited(uow, dispute, utcnow(), actor=actor, action="disputes.save_draft")
        if problem:
            raise DisputeActionError(problem)
        draft = uow.session.execute(select(DisputeEvidenceDraft).where(
            DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()
        version = (draft.version if draft else 0) + 1
        files = dict(draft.files) if draft else {}
    evidence: dict[str, Any] = {**{name: "" for name in ev.TEXT_FIELDS if name not in text}, **text,
                                **{name: meta["file_id"] for name, meta in files.items()}}
    enhanced = ce.assess(uow, dispute_id, test_mode=settings.stripe_mode == "test").enhanced_evidence()
    if enhanced:  # Visa CE 3.0: the prior undisputed payments, staged so Stripe reports eligibility
        evidence["enhanced_evidence"] = enhanced
    key = f"dispute-evidence:{dispute_id}:v{version}"
    try:
        staged = gateway.update_dispute(dispute_id, {"evidence": evidence, "submit": False}, idempotency_key=key)
    except StripeGatewayError as error:
        with uow:
            audit.record(uow, actor=actor, action="disputes.save_draft", target=dispute_id, idempotency_key=key,
                         result="error", error=error.message)
            uow.commit()
        raise DisputeActionError(error.message) from None
    with uow:
        draft = uow.session.execute(select(DisputeEvidenceDraft).where(
            DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()
        if draft is None:
            draft = DisputeEvidenceDraft(dispute_id=dispute_id, files={})
            uow.session.add(draft)
        draft.fields, draft.version, draft.updated_by = text, version, actor
        draft.staged_to_stripe_at = utcnow()
        _fresh(uow, staged)
        audit.record(uow, actor=actor, action="disputes.save_draft", target=dispute_id, idempotency_key=key,
                     result="ok", details={"fields": sorted(text), "characters": ev.text_length(text),
                                           **_ce3_details(enhanced)})
        uow.commit()
        return draft


@privileged("disputes.upload_file")
def upload_evidence_file(dispute_id: str, evidence_field: str, filename: str, content: bytes, *, actor: str,
                         settings: Settings, uow: UnitOfWork, gateway: StripeGateway) -> dict[str, Any]:
    """Upload a PDF/JPEG/PNG (<= 5 MB) with purpose dispute_evidence and attach it to a field of the draft."""
    if evidence_field not in ev.FILE_FIELDS:
        raise DisputeActionError(f"{evidence_field} does not take a file.")
    problem = ev.check_file(content)
    if problem:
        raise DisputeActionError(problem)
    with uow:
        dispute = uow.session.get(Dispute, dispute_id)
        if dispute is None:
            raise DisputeActionError(f"There is no dispute {dispute_id}.")
        _check_open_audited(uow, dispute, utcnow(), actor=actor, action="disputes.upload_file")
    digest = hashlib.sha256(content).hexdigest()
    key = f"dispute-file:{dispute_id}:{digest}"
    try:
        uploaded = gateway.upload_file(io.BytesIO(content), filename=filename, purpose="dispute_evidence",
                                       idempotency_key=key)
    except StripeGatewayError as error:
        raise DisputeActionError(error.message) from None
    meta = {"file_id": uploaded["id"], "filename": filename, "size": len(content), "type": uploaded.get("type")}
    with uow:
        draft = uow.session.execute(select(DisputeEvidenceDraft).where(
            DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()
        if draft is None:
            draft = DisputeEvidenceDraft(dispute_id=dispute_id, fields={}, files={})
            uow.session.add(draft)
        draft.files = {**draft.files, evidence_field: meta}
        draft.updated_by = actor
        evidence_files.keep_copy(uow, dispute_id, evidence_field, uploaded["id"], filename, content, actor=actor)
        audit.record(uow, actor=actor, action="disputes.upload_file", target=dispute_id, idempotency_key=key,
                     result="ok", details={"field": evidence_field, "file": uploaded["id"], "filename": filename,
                                           "size": len(content)})
        uow.commit()
    return meta


def submission_preview(uow: UnitOfWork, dispute_id: str) -> dict[str, Any]:
    """Exactly what Submit will send."""
    with uow:
        draft = uow.session.execute(select(DisputeEvidenceDraft).where(
            DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()
        if draft is None:
            return {}
        return {**draft.fields, **{name: meta["file_id"] for name, meta in draft.files.items()}}


@dataclass(frozen=True)
class EvidenceLine:
    label: str
    value: str  # the text, or for a file its name and size: never a file id
    is_file: bool


def _draft_file_names(uow: UnitOfWork, dispute_id: str) -> dict[str, str]:
    with uow:
        draft = uow.session.execute(select(DisputeEvidenceDraft).where(
            DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()
        return {name: str(meta.get("filename") or "file") for name, meta in (draft.files if draft else {}).items()}


def _label(name: str) -> str:
    field_ = ev.ALL_FIELDS.get(name)
    return field_.label if field_ else name.replace("_", " ").capitalize()


def submission_summary(uow: UnitOfWork, dispute_id: str) -> list[EvidenceLine]:
    """What Submit will send, in words: each field's label and text, each file's label and name."""
    with uow:
        draft = uow.session.execute(select(DisputeEvidenceDraft).where(
            DisputeEvidenceDraft.dispute_id == dispute_id)).scalar_one_or_none()
        if draft is None:
            return []
        order = {f.name: i for i, f in enumerate(f for group in ev.GROUPS.values() for f in group)}
        lines = [EvidenceLine(_label(name), str(value), False) for name, value in draft.fields.items() if value]
        for name, meta in draft.files.items():
            size = int(meta.get("size") or 0)
            lines.append(EvidenceLine(_label(name), f"{meta.get('filename') or 'file'} ({size / 1024:,.0f} KB)", True))
        names = {**{_label(n): n for n in draft.fields}, **{_label(n): n for n in draft.files}}
        return sorted(lines, key=lambda line: order.get(names.get(line.label, ""), len(order)))


_HISTORY_ACTIONS = {"disputes.save_draft": "saved the draft", "disputes.upload_file": "attached a file",
                    "disputes.submit": "submitted the evidence", "disputes.accept": "accepted the dispute"}


def evidence_history(uow: UnitOfWork, dispute_id: str) -> list[dict[str, Any]]:
    """Who did what to this dispute's evidence and when, from the audit log (newest first)."""
    with uow:
        rows = uow.session.execute(
            select(AuditLog).where(AuditLog.target == dispute_id, AuditLog.action.in_(tuple(_HISTORY_ACTIONS)))
            .order_by(AuditLog.id.desc())
        ).scalars()
        history = []
        for row in rows:
            details = row.details or {}
            what = _HISTORY_ACTIONS[row.action]
            if row.action in ("disputes.submit", "disputes.save_draft"):
                files = details.get("files") or {}
                labels = [_label(n) for n in details.get("fields") or [] if n not in files]
                what += (": " + ", ".join(labels)) if labels else ""
                if files:
                    what += "; files: " + ", ".join(f"{_label(n)} ({name})" for n, name in files.items())
            elif row.action == "disputes.upload_file":
                what += f": {_label(str(details.get('field') or ''))}" + (
                    f" ({details['filename']})" if details.get("filename") else "")
            history.append({"when": f"{row.at:%Y-%m-%d %H:%M} UTC", "who": row.actor, "what": what,
                            "result": row.result if row.result != "ok" else "done"})
        return history


@privileged("disputes.submit")
def submit_evidence(dispute_id: str, *, actor: str, settings: Settings, uow: UnitOfWork,
                    gateway: StripeGateway) -> Dispute:
    """Send the saved draft with submit=true, once. The form is read-only afterwards."""
    evidence = submission_preview(uow, dispute_id)
    key = f"dispute-submit:{dispute_id}"
    now = utcnow()
    with uow:
        dispute = uow.session.get(Dispute, dispute_id)
        if dispute is None:
            raise DisputeActionError(f"There is no dispute {dispute_id}.")
        _check_open_audited(uow, dispute, now, actor=actor, action="disputes.submit")
        if not evidence:
            raise DisputeActionError("Save a draft with some evidence before submitting.")
        problem = ev.check_text({k: v for k, v in evidence.items() if k in ev.TEXT_FIELDS})
        if problem:
            raise DisputeActionError(problem)
        claimed = rows_affected(uow.session.execute(
            update(Dispute).where(Dispute.id == dispute_id, Dispute.submitted_at.is_(None),
                                  Dispute.accepted_at.is_(None))
            .values(submitted_at=now, submitted_by=actor)))
        uow.commit()
    if not claimed:
        raise DisputeActionError("This evidence is already being submitted.")
    enhanced = ce.assess(uow, dispute_id, test_mode=settings.stripe_mode == "test").enhanced_evidence()
    sent: dict[str, Any] = {**evidence, "enhanced_evidence": enhanced} if enhanced else evidence
    return _finish_claimed(
        uow, dispute_id, action="disputes.submit", key=key, actor=actor,
        call=lambda: gateway.update_dispute(dispute_id, {"evidence": sent, "submit": True}, idempotency_key=key),
        release={"submitted_at": None, "submitted_by": None},
        details={"fields": sorted(evidence), "files": _draft_file_names(uow, dispute_id), **_ce3_details(enhanced)},
    )


def _ce3_details(enhanced: dict[str, Any] | None) -> dict[str, Any]:
    """For the audit row: which prior payments went out as Visa CE 3.0 evidence (no PII)."""
    if not enhanced:
        return {}
    ce3 = enhanced[ce.CE3]
    shared = [k for k in ("customer_purchase_ip", "customer_device_id", "customer_device_fingerprint",
                          "customer_email_address", "customer_account_id", "shipping_address")
              if k in ce3["disputed_transaction"]]
    return {"ce3": {"prior_charges": [p["charge"] for p in ce3["prior_undisputed_transactions"]],
                    "elements": shared}}


@privileged("disputes.accept")
def accept_dispute(dispute_id: str, *, actor: str, settings: Settings, uow: UnitOfWork,
                   gateway: StripeGateway) -> Dispute:
    """Close the dispute: the amount is lost to the cardholder."""
    key = f"dispute-accept:{dispute_id}"
    now = utcnow()
    with uow:
        dispute = uow.session.get(Dispute, dispute_id)
        if dispute is None:
            raise DisputeActionError(f"There is no dispute {dispute_id}.")
        if dispute.status not in OPEN_STATUSES:
            raise DisputeActionError(f"This dispute is {dispute.status.replace('_', ' ')}; it cannot be accepted.")
        claimed = rows_affected(uow.session.execute(
            update(Dispute).where(Dispute.id == dispute_id, Dispute.accepted_at.is_(None),
                                  Dispute.submitted_at.is_(None))
            .values(accepted_at=now, accepted_by=actor)))
        uow.commit()
    if not claimed:
        raise DisputeActionError("This dispute is already being accepted or submitted.")
    return _finish_claimed(
        uow, dispute_id, action="disputes.accept", key=key, actor=actor,
        call=lambda: gateway.close_dispute(dispute_id, idempotency_key=key),
        release={"accepted_at": None, "accepted_by": None}, details={},
    )


def _finish_claimed(uow: UnitOfWork, dispute_id: str, *, action: str, key: str, actor: str,
                    call: Callable[[], dict[str, Any]], release: dict[str, Any],
                    details: dict[str, Any]) -> Dispute:
    """Make the Stripe call for a claimed submit/accept. On a Stripe error the claim is
    released (nothing local changes) and the error audited; on success the returned
    dispute is stored and the action audited."""
    try:
        result = call()
    except StripeGatewayError as error:
        with uow:
            uow.session.execute(update(Dispute).where(Dispute.id == dispute_id).values(**release))
            audit.record(uow, actor=actor, action=action, target=dispute_id, idempotency_key=key, result="error",
                         error=error.message)
            uow.commit()
        raise DisputeActionError(error.message) from None
    with uow:
        _fresh(uow, result)
        audit.record(uow, actor=actor, action=action, target=dispute_id, idempotency_key=key, result="ok",
                     details={**details, "amount": result.get("amount"), "currency": result.get("currency")})
        uow.commit()
        row = uow.session.get(Dispute, dispute_id)
        assert row is not None
        return row


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
