"""The first-24h figures Numzy §13 names, each with the rows behind it:

- new-subscription success rate: Checkout Sessions completed over created (read from Stripe's
  list endpoint for the window: no event announces a created session), and subscriptions that
  became active over those created (billing DB; "became active" means the first invoice was
  paid: Stripe keeps a subscription `incomplete` until then and `incomplete_expired` after
  23 hours), with the incomplete ones listed;
- downgrades applied (reconciliation's `downgrade.applied` points) against downgrades due in the
  window (applied, plus every subscription whose period ended in the window with its pending plan
  still set), the due-and-not-applied ones listed and linked;
- plan-change errors as a list (each failed plan change, correction or reconcile apply in the
  audit log), with customer, error and link, each markable resolved with a note (audited).

Test-clock, QA-matrix and smoke-test activity stays out: objects with a `test_clock`, or
metadata `qa_run`/`qa_case`/`smoke_test` (services/webhook_counts.is_test_event's rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.models import ChangeErrorResolution
from db.models.base import utcnow
from db.repositories import launch_figures as launch_rows
from db.repositories import metrics as metric_rows
from db.session import UnitOfWork
from services import audit
from services import metric_points as m
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.webhook_counts import is_test_event

INCOMPLETE = ("incomplete", "incomplete_expired")
# Audit actions whose `error` rows are plan-change errors (the runbook's change.error).
CHANGE_ACTIONS = ("plan.upgrade", "plan.schedule_downgrade", "plan.cancel_scheduled_downgrade",
                  "plan.cancel_at_period_end", "plan.resume", "reconcile.apply_downgrade", "subscription.correct")
MIN_NOTE_CHARS = 5
MAX_NOTE_CHARS = 2000


class FiguresError(ConsoleError):
    """A figure action was refused; the message says why."""


def is_test_object(obj: dict[str, Any] | None) -> bool:
    return bool(obj) and is_test_event({"data": {"object": obj}})


def subscription_link(subscription_id: str) -> str:
    return f"/plan-changes?subscription={subscription_id}"


# --- success rate ---------------------------------------------------------------------------------
@dataclass
class SuccessRate:
    sessions_created: int | None  # None when Stripe could not be read
    sessions_completed: int | None
    sessions_error: str | None
    subscriptions_created: int
    subscriptions_active: int
    incomplete: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checkout_rate(self) -> float | None:
        if not self.sessions_created or self.sessions_completed is None:
            return None
        return self.sessions_completed / self.sessions_created

    @property
    def activation_rate(self) -> float | None:
        return self.subscriptions_active / self.subscriptions_created if self.subscriptions_created else None


def success_rate(uow: UnitOfWork, gateway: StripeGateway | None, *, start: datetime, end: datetime) -> SuccessRate:
    created = completed = None
    error = None
    if gateway is not None:
        try:
            # Stripe's `created` is whole seconds: [start, end) holds second T exactly when
            # ceil(start) <= T < ceil(end). Flooring `end` (a range ending now) dropped every session
            # created in the current second, so a board read right after a checkout showed 0 / 0.
            window = {"gte": math.ceil(start.timestamp()), "lt": math.ceil(end.timestamp())}
            sessions = [s for s in gateway.list_checkout_sessions(created=window) if not is_test_object(s)]
            created = len(sessions)
            completed = sum(1 for s in sessions if s.get("status") == "complete")
        except StripeGatewayError as failure:
            error = failure.message
    with uow:
        rows = [r for r in launch_rows.subscriptions_started(uow, start=start, end=end) if not is_test_object(r.raw)]
        incomplete = [r for r in rows if r.status in INCOMPLETE]
        emails = launch_rows.customer_emails(uow, {r.stripe_customer_id for r in incomplete})
        listed = [{"subscription": r.stripe_subscription_id, "customer": r.stripe_customer_id,
                   "email": emails.get(r.stripe_customer_id), "status": r.status,
                   "started": r.started_at, "link": subscription_link(r.stripe_subscription_id)}
                  for r in sorted(incomplete, key=lambda r: r.started_at or start)]
    return SuccessRate(created, completed, error, len(rows), len(rows) - len(incomplete), listed)


# --- downgrades applied vs due ---------------------------------------------------------------------
@dataclass
class DowngradeFigures:
    applied: int
    due: int
    not_applied: list[dict[str, Any]] = field(default_factory=list)


def downgrades(uow: UnitOfWork, *, start: datetime, end: datetime, now: datetime | None = None) -> DowngradeFigures:
    """Due = applied in the window + period ended in the window with the pending plan still set."""
    moment = min(end, now or utcnow())
    with uow:
        applied = metric_rows.production_total(uow, m.DOWNGRADE_APPLIED, start=start, end=end)
        missed = [r for r in launch_rows.pending_plan_due(uow, start=start, until=moment) if not is_test_object(r.raw)]
        emails = launch_rows.customer_emails(uow, {r.stripe_customer_id for r in missed})
        listed = [{"subscription": r.stripe_subscription_id, "customer": r.stripe_customer_id,
                   "email": emails.get(r.stripe_customer_id), "pending_plan": r.pending_plan,
                   "period_end": r.current_period_end, "status": r.status,
                   "link": subscription_link(r.stripe_subscription_id)} for r in missed]
    return DowngradeFigures(applied, applied + len(listed), listed)


# --- plan-change errors ---------------------------------------------------------------------------------
def change_errors(uow: UnitOfWork, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    with uow:
        rows = launch_rows.audited_errors(uow, CHANGE_ACTIONS, start=start, end=end)
        subscriptions = launch_rows.subscriptions_by_id(uow, {r.target for r in rows if r.target})
        emails = launch_rows.customer_emails(uow, {s.stripe_customer_id for s in subscriptions.values()})
        resolutions = launch_rows.resolutions(uow, [r.id for r in rows])
        listed = []
        for row in rows:
            subscription = subscriptions.get(row.target or "")
            if subscription is not None and is_test_object(subscription.raw):
                continue
            resolution = resolutions.get(row.id)
            customer = subscription.stripe_customer_id if subscription else None
            listed.append({
                "id": row.id, "at": row.at, "action": row.action, "subscription": row.target,
                "customer": customer, "email": emails.get(customer or ""), "error": row.error or "",
                "link": subscription_link(row.target) if row.target else "",
                "resolved": resolution is not None,
                "resolved_by": resolution.resolved_by if resolution else None,
                "resolved_at": resolution.resolved_at if resolution else None,
                "note": resolution.note if resolution else None,
            })
        return listed


@privileged("metrics.resolve_change_error")
def resolve_change_error(audit_id: int, note: str, *, actor: str, settings: Settings,
                         uow: UnitOfWork) -> dict[str, Any]:
    """Mark one plan-change error resolved with a note (who, when and why kept; audited)."""
    text = (note or "").strip()
    with uow:
        error_row = launch_rows.audit_row(uow, audit_id)
        refusal = None
        if error_row is None or error_row.action not in CHANGE_ACTIONS or error_row.result != "error":
            refusal = "There is no such plan-change error; reload the page."
        elif len(text) < MIN_NOTE_CHARS:
            refusal = f"Write a note of at least {MIN_NOTE_CHARS} characters saying how it was resolved."
        elif launch_rows.resolutions(uow, [audit_id]):
            refusal = "This error is already marked resolved."
        if refusal:
            audit.record(uow, actor=actor, action="metrics.resolve_change_error", result="refused",
                         target=f"audit:{audit_id}", error=refusal)
            uow.commit()
            raise FiguresError(refusal)
        assert error_row is not None
        resolution = ChangeErrorResolution(audit_id=audit_id, note=text[:MAX_NOTE_CHARS], resolved_by=actor,
                                           resolved_at=utcnow(),
                                           details={"action": error_row.action, "subscription": error_row.target,
                                                    "error": error_row.error})
        launch_rows.add_resolution(uow, resolution)
        audit.record(uow, actor=actor, action="metrics.resolve_change_error", result="ok",
                     target=f"audit:{audit_id}", idempotency_key=f"resolve:change_error:{audit_id}",
                     details={"subscription": error_row.target, "note": resolution.note})
        uow.commit()
        return {"audit_id": audit_id, "note": resolution.note, "resolved_by": actor}


def frozen(uow: UnitOfWork, *, start: datetime, end: datetime) -> dict[str, Any]:
    """The figures as a metrics snapshot freezes them (from the billing DB; Checkout Sessions are
    read from Stripe only on the page)."""
    rate = success_rate(uow, None, start=start, end=end)
    due = downgrades(uow, start=start, end=end, now=end)
    errors = change_errors(uow, start=start, end=end)
    return {
        "subscriptions_created": rate.subscriptions_created, "subscriptions_active": rate.subscriptions_active,
        "subscriptions_incomplete": [r["subscription"] for r in rate.incomplete],
        "downgrades_applied": due.applied, "downgrades_due": due.due,
        "downgrades_not_applied": [r["subscription"] for r in due.not_applied],
        "change_errors": len(errors), "change_errors_open": sum(1 for e in errors if not e["resolved"]),
    }
