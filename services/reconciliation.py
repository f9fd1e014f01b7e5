"""Reconciliation runs: apply scheduled downgrades shortly before the period ends,
and report drift between Stripe and the billing DB.

A run lists ALL subscriptions (status=all, limit=100 pages, under the gateway's
rate limit; the seed job stopped after 200 users) and, for each:
- a pending downgrade (`cancel_at_period_end=true` + `metadata.pending_plan`)
  whose period end falls within the lookahead is applied: the item's price
  changes with `proration_behavior=none`, `cancel_at_period_end=false`, and
  `pending_plan` is cleared. The period end is read from the subscription ITEM:
  API 2025-03-31.basil moved it there, and reading the old field is what turned
  the seed job's downgrades into cancellations.
- drift is reported, never changed unless an admin applies a fix from the page.

Exactly once: the Stripe update carries the key `downgrade:<sub>:<period end>`.
Before calling Stripe the run commits a `pending` action row holding the exact
params (claimed under a lock, so two overlapping runs never both call Stripe).
After the call the row becomes `applied`. If the process dies in between, the
next run finds the stale `pending` row and re-sends the same params with the same
key: Stripe replays its stored response, so the subscription changes once and
the one action row is marked applied once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update

from db.models import ReconcileAction, ReconcileRun, UserSubscription
from db.models.base import from_unix, utcnow
from db.session import UnitOfWork
from services import audit
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError
from services.leases import acquire_lease
from services.metric_points import CHANGE_ERROR, DOWNGRADE_APPLIED, RECONCILE_RUN, TEST_TAG, record_metric
from services.observability import capture_alert
from services.plan_changes import (
    DOWNGRADE_PRORATION,
    fresh_observed_at,
    monthly_amount,
    record_plan_change,
)
from services.runtime import Runtime
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.stripe_mapping import upsert_subscription
from services.stripe_objects import item_id, item_price_id, subscription_period
from services.switches import Paused, SwitchState, refuse_if_paused, switch_state
from services.webhook_counts import QA_TRIGGER

log = logging.getLogger(__name__)

RECONCILE_LEASE = "reconcile"
# A `pending` action older than this whose run never finished belongs to a dead
# worker; the next run completes it (same key, so Stripe replays).
STALE_PENDING_SECONDS = 600
# Serialises downgrade claims across PostgreSQL sessions (SQLite: BEGIN IMMEDIATE).
_CLAIM_LOCK_ID = 7243008

APPLY_DOWNGRADE = "apply_downgrade"
DRIFT_PENDING_WITHOUT_CANCEL = "drift_pending_without_cancel"
DRIFT_PENDING_PAST_PERIOD_END = "drift_pending_past_period_end"
DRIFT_PLAN_MISMATCH = "drift_plan_mismatch"
DRIFT_MISSING_IN_DB = "drift_missing_in_db"
DRIFT_UNKNOWN_PRICE = "drift_unknown_price"
# A subscription that ended (Stripe cancelled it) while its downgrade was still pending: not
# drift to patch but a lost customer (see services/lost_customers.py for what can be done).
LOST_CUSTOMER = "lost_customer"
DRIFT_KINDS = (
    LOST_CUSTOMER,
    DRIFT_PENDING_WITHOUT_CANCEL,
    DRIFT_PENDING_PAST_PERIOD_END,
    DRIFT_PLAN_MISMATCH,
    DRIFT_MISSING_IN_DB,
    DRIFT_UNKNOWN_PRICE,
)
DRIFT_DESCRIPTIONS = {
    LOST_CUSTOMER: "customer lost: downgrade not applied before period end",
    DRIFT_PENDING_WITHOUT_CANCEL: "pending_plan is set but cancel_at_period_end is false",
    DRIFT_PENDING_PAST_PERIOD_END: "pending_plan is still set after its period ended",
    DRIFT_PLAN_MISMATCH: "the billing DB's plan disagrees with Stripe's price",
    DRIFT_MISSING_IN_DB: "the subscription exists in Stripe but not in the billing DB",
    DRIFT_UNKNOWN_PRICE: "the subscription's price is not in the plan mapping",
}
# Statuses whose price can no longer change; a pending plan on them is only drift.
_ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})


class ReconcileError(ConsoleError):
    """A reconciliation run or fix was refused or failed."""


class ReconcileRefused(ReconcileError):
    """The run did not start: preflight-blocking configuration is missing. Nothing is persisted
    but one audit row (result `refused`)."""


def configuration_blockers(settings: Settings) -> list[str]:
    """The preflight's blocking failures that need no Stripe call and that would make a run's
    findings false (e.g. a missing price mapping makes every subscription 'unknown price')."""
    from services.preflight import check_required_plans, check_stripe_key

    return [f"{result.message} {result.fix}".strip()
            for result in (check_stripe_key(settings), check_required_plans(settings)) if result.blocking_failure]


def _refuse_if_misconfigured(settings: Settings, uow: UnitOfWork, *, apply: bool, trigger: str, actor: str) -> None:
    blockers = configuration_blockers(settings)
    if not blockers:
        return
    message = "Reconciliation refused: " + " ".join(blockers)
    with uow:
        audit.record(uow, actor=actor, action="reconcile.run", result="refused", target="reconcile",
                     details={"mode": "apply" if apply else "dry-run", "trigger": trigger, "reasons": blockers},
                     error=message)
        uow.commit()
    raise ReconcileRefused(message)


@dataclass
class ActionReport:
    subscription_id: str
    kind: str
    result: str  # planned | applied | skipped | error | reported | fixed
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    idempotency_key: str | None = None
    action_id: int | None = None


@dataclass
class ReconcileReport:
    run_id: int
    mode: str  # dry-run | apply
    trigger: str
    actor: str
    started_at: datetime
    finished_at: datetime | None = None
    now: int = 0
    lookahead_seconds: int = 0
    examined: int = 0
    applied: int = 0
    planned: int = 0
    drift: int = 0
    errors: int = 0
    list_calls: int = 0
    error: str | None = None
    alert: str | None = None
    actions: list[ActionReport] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()


@dataclass
class DueDowngrade:
    subscription: dict[str, Any]
    key: str
    params: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]


# --- evaluation (pure) -----------------------------------------------------------------
def _state(subscription: dict[str, Any], settings: Settings) -> dict[str, Any]:
    price_id = item_price_id(subscription)
    mapped = settings.plan_for_price(price_id) if price_id else None
    metadata = subscription.get("metadata") or {}
    return {
        "status": subscription.get("status"),
        "price": price_id,
        "plan": mapped[0] if mapped else None,
        "interval": mapped[1] if mapped else None,
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
        "pending_plan": metadata.get("pending_plan") or None,
        "pending_interval": metadata.get("pending_interval") or None,
        "current_period_end": subscription_period(subscription)[1],
    }


def downgrade_key(subscription_id: str, period_end: int) -> str:
    return f"downgrade:{subscription_id}:{period_end}"


def evaluate(
    subscription: dict[str, Any],
    db_row: tuple[str | None, str | None] | None,
    *,
    settings: Settings,
    now: int,
    lookahead_seconds: int,
) -> tuple[DueDowngrade | None, list[ActionReport]]:
    """What one subscription needs: a due downgrade and/or drift findings.
    `db_row` is (plan, interval) stored in the billing DB, or None if missing."""
    subscription_id = subscription["id"]
    state = _state(subscription, settings)
    findings: list[ActionReport] = []
    due: DueDowngrade | None = None

    def finding(kind: str, **after: Any) -> None:
        findings.append(
            ActionReport(subscription_id, kind, "reported", before=state,
                         after={"problem": DRIFT_DESCRIPTIONS[kind], **after})
        )

    if db_row is None:
        finding(DRIFT_MISSING_IN_DB)
    if state["price"] and state["plan"] is None:
        finding(DRIFT_UNKNOWN_PRICE, price=state["price"])
    elif db_row is not None and state["plan"] is not None and tuple(db_row) != (state["plan"], state["interval"]):
        finding(DRIFT_PLAN_MISMATCH, db_plan=db_row[0], db_interval=db_row[1])

    pending_plan = state["pending_plan"]
    period_end = state["current_period_end"]
    if pending_plan:
        if state["status"] in _ENDED_STATUSES:
            interval = state["pending_interval"] or state["interval"] or "monthly"
            finding(LOST_CUSTOMER, customer=str(subscription.get("customer") or ""),
                    ended_at=subscription.get("ended_at") or subscription.get("canceled_at") or period_end,
                    pending_plan=pending_plan, pending_interval=interval,
                    pending_price=settings.price_id(pending_plan, interval))
        elif not state["cancel_at_period_end"]:
            finding(DRIFT_PENDING_WITHOUT_CANCEL)
        elif period_end is None or period_end <= now:
            finding(DRIFT_PENDING_PAST_PERIOD_END)
        elif period_end - now <= lookahead_seconds:
            interval = state["pending_interval"] or state["interval"] or "monthly"
            target_price = settings.price_id(pending_plan, interval)
            subscription_item_id = item_id(subscription)
            key = downgrade_key(subscription_id, period_end)
            if target_price is None or subscription_item_id is None:
                findings.append(
                    ActionReport(
                        subscription_id, APPLY_DOWNGRADE, "error", before=state, idempotency_key=key,
                        error=f"pending plan '{pending_plan} {interval}' has no price in the plan mapping",
                    )
                )
            else:
                params = {
                    "items": [{"id": subscription_item_id, "price": target_price}],
                    "proration_behavior": DOWNGRADE_PRORATION,
                    "cancel_at_period_end": False,
                    # Stripe removes a metadata key set to an empty string.
                    "metadata": {"pending_plan": "", "pending_interval": ""},
                }
                after = {"price": target_price, "plan": pending_plan, "interval": interval,
                         "cancel_at_period_end": False, "pending_plan": None, "stripe_params": params}
                due = DueDowngrade(subscription, key, params, state, after)
    return due, findings


# --- the run ---------------------------------------------------------------------------
def _lock_claims(uow: UnitOfWork) -> None:
    bind = uow.session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        uow.session.execute(text(f"SELECT pg_advisory_xact_lock({_CLAIM_LOCK_ID})"))


def _start_run(uow: UnitOfWork, *, apply: bool, trigger: str, actor: str, lookahead: int) -> ReconcileRun:
    with uow:
        run = ReconcileRun(
            started_at=utcnow(), mode="apply" if apply else "dry-run", trigger=trigger, actor=actor,
            lookahead_seconds=lookahead,
        )
        uow.session.add(run)
        uow.commit()
        return run


def _db_plans(uow: UnitOfWork) -> dict[str, tuple[str | None, str | None]]:
    with uow:
        rows = uow.session.execute(
            select(UserSubscription.stripe_subscription_id, UserSubscription.plan, UserSubscription.interval)
        )
        return {row[0]: (row[1], row[2]) for row in rows}


# A decision on a finding (dismissed, handled, or a lost customer re-subscribed) carries over
# to later runs while the subscription's state is the same, so it is not reported again.
DECIDED_RESULTS = ("dismissed", "handled")
_SAME_STATE = ("status", "price", "pending_plan", "cancel_at_period_end")
_DECISION_FIELDS = ("dismissed_by", "dismissed_reason", "dismissed_at", "handled_by", "handled_reason",
                    "handled_at", "fixed_by", "fixed_at", "fix", "new_subscription")


def _carry_decisions(uow: UnitOfWork, findings: list[ActionReport]) -> None:
    if not findings:
        return
    with uow:
        rows = uow.session.execute(
            select(ReconcileAction)
            .where(ReconcileAction.kind.in_(DRIFT_KINDS),
                   ReconcileAction.result.in_((*DECIDED_RESULTS, "fixed")))
            .order_by(ReconcileAction.id.desc())
        ).scalars()
        decided: dict[tuple[str, str], ReconcileAction] = {}
        for row in rows:
            if row.result == "fixed" and row.kind != LOST_CUSTOMER:
                continue  # a fixed drift is gone in Stripe; if it is back, it is news
            decided.setdefault((row.stripe_subscription_id, row.kind), row)
        for finding in findings:
            prior = decided.get((finding.subscription_id, finding.kind))
            if prior is None or any((prior.before or {}).get(k) != finding.before.get(k) for k in _SAME_STATE):
                continue
            finding.result = prior.result
            finding.after = {**finding.after, "carried_from": prior.id,
                             **{k: v for k, v in (prior.after or {}).items() if k in _DECISION_FIELDS}}


def _price_lost_revenue(gateway: StripeGateway, findings: list[ActionReport]) -> None:
    """A lost customer's monthly revenue: the pending plan's price per month, minor units."""
    prices: dict[str, dict[str, Any] | None] = {}
    for finding in findings:
        price_id = finding.after.get("pending_price") if finding.kind == LOST_CUSTOMER else None
        if not price_id:
            continue
        if price_id not in prices:
            try:
                prices[price_id] = gateway.retrieve_price(str(price_id))
            except StripeGatewayError:
                prices[price_id] = None
        price = prices[price_id]
        if price is not None and price.get("unit_amount") is not None:
            finding.after["monthly_revenue_lost"] = int(round(monthly_amount(price)))
            finding.after["currency"] = str(price.get("currency") or "usd")


def _store_findings(uow: UnitOfWork, run_id: int, findings: Iterable[ActionReport]) -> None:
    batch = list(findings)
    if not batch:
        return
    with uow:
        rows = [
            ReconcileAction(
                run_id=run_id, stripe_subscription_id=f.subscription_id, kind=f.kind, before=f.before,
                after=f.after, result=f.result, error=f.error, idempotency_key=None, at=utcnow(),
            )
            for f in batch
        ]
        uow.session.add_all(rows)
        uow.session.flush()
        for report, row in zip(batch, rows, strict=True):
            report.action_id = row.id
        uow.commit()


def _claim(uow: UnitOfWork, run_id: int, due: DueDowngrade) -> tuple[str, ActionReport]:
    """Record intent before calling Stripe. Returns ("go"|"done"|"busy", action)."""
    subscription_id = due.subscription["id"]
    with uow:
        _lock_claims(uow)
        existing = uow.session.execute(
            select(ReconcileAction).where(
                ReconcileAction.idempotency_key == due.key,
                ReconcileAction.kind == APPLY_DOWNGRADE,
                ReconcileAction.result.in_(("pending", "applied")),
            )
        ).scalars().first()
        if existing is not None:
            report = ActionReport(
                subscription_id, APPLY_DOWNGRADE, "skipped", before=due.before,
                after={"reason": f"already {existing.result} by run {existing.run_id}"},
                idempotency_key=due.key, action_id=existing.id,
            )
            return ("done" if existing.result == "applied" else "busy"), report
        row = ReconcileAction(
            run_id=run_id, stripe_subscription_id=subscription_id, kind=APPLY_DOWNGRADE, before=due.before,
            after=due.after, result="pending", idempotency_key=due.key, at=utcnow(),
        )
        uow.session.add(row)
        uow.commit()
        return "go", ActionReport(
            subscription_id, APPLY_DOWNGRADE, "pending", before=due.before, after=due.after,
            idempotency_key=due.key, action_id=row.id,
        )


def _finish_downgrade(
    uow: UnitOfWork,
    action_id: int,
    *,
    run_id: int,
    updated: dict[str, Any] | None,
    error: StripeGatewayError | None,
    settings: Settings,
    actor: str,
) -> ActionReport:
    """Mark the claimed action applied (or error) with the DB, metrics and audit, at once."""
    with uow:
        action = uow.session.get(ReconcileAction, action_id)
        assert action is not None
        key = action.idempotency_key
        subscription_id = action.stripe_subscription_id
        after = dict(action.after or {})
        if action.run_id != run_id:
            after["completed_by_run"] = run_id
        if error is not None:
            action.result = "error"
            action.error = error.message
            record_metric(uow, CHANGE_ERROR, tags={"kind": "reconcile_downgrade", "code": error.code or "unknown"})
            audit.record(uow, actor=actor, action="reconcile.apply_downgrade", result="error",
                         target=subscription_id, idempotency_key=key, error=error.message)
        else:
            assert updated is not None
            after["stripe_state"] = _state(updated, settings)
            action.result = "applied"
            action.error = None
            upsert_subscription(uow, updated, observed_at=fresh_observed_at(uow, subscription_id), settings=settings)
            before_plan = (action.before or {}).get("plan")
            record_plan_change(uow, subscription_id, kind="downgrade_applied", actor=actor,
                               from_plan=before_plan, to_plan=after.get("plan"),
                               details={"idempotency_key": key, "run_id": run_id})
            test = {TEST_TAG: True} if updated.get("test_clock") else {}  # a test-clock subscription
            record_metric(uow, DOWNGRADE_APPLIED, tags={"to_plan": after.get("plan") or "", **test},
                          dedupe_key=f"{key}:{DOWNGRADE_APPLIED}")
            audit.record(uow, actor=actor, action="reconcile.apply_downgrade", result="ok",
                         target=subscription_id, idempotency_key=key,
                         details={"run_id": run_id, "to_plan": after.get("plan")})
        action.after = after
        action.at = utcnow()
        uow.commit()
        return ActionReport(subscription_id, APPLY_DOWNGRADE, action.result, before=action.before, after=after,
                            error=action.error, idempotency_key=key, action_id=action.id)


def _send_downgrade(
    gateway: StripeGateway, subscription_id: str, params: dict[str, Any], key: str
) -> tuple[dict[str, Any] | None, StripeGatewayError | None]:
    try:
        return gateway.update_subscription(subscription_id, params, idempotency_key=key), None
    except StripeGatewayError as error:
        return None, error


def _recover_stale_pending(
    uow: UnitOfWork, gateway: StripeGateway, *, run_id: int, settings: Settings, actor: str
) -> list[ActionReport]:
    """Complete downgrades whose run died between the Stripe call and the DB write."""
    stale_before = utcnow() - timedelta(seconds=STALE_PENDING_SECONDS)
    with uow:
        rows = uow.session.execute(
            select(ReconcileAction.id, ReconcileAction.stripe_subscription_id, ReconcileAction.after,
                   ReconcileAction.idempotency_key)
            .join(ReconcileRun, ReconcileRun.id == ReconcileAction.run_id)
            .where(
                ReconcileAction.kind == APPLY_DOWNGRADE,
                ReconcileAction.result == "pending",
                ReconcileAction.run_id != run_id,
                (ReconcileRun.finished_at.is_not(None)) | (ReconcileAction.at < stale_before),
            )
        ).all()
    reports = []
    for action_id, subscription_id, after, key in rows:
        params = (after or {}).get("stripe_params")
        if not params or not key:
            continue
        # Same params, same key: Stripe replays the first response if it was applied.
        updated, error = _send_downgrade(gateway, subscription_id, params, key)
        reports.append(_finish_downgrade(uow, action_id, run_id=run_id, updated=updated, error=error,
                                         settings=settings, actor=actor))
    return reports


def _finish_run(uow: UnitOfWork, report: ReconcileReport, settings: Settings) -> None:
    report.finished_at = utcnow()
    if report.applied > settings.alert_reconcile_applied_max:
        report.alert = (
            f"Reconciliation run {report.run_id} applied {report.applied} downgrades, more than the alert "
            f"threshold of {settings.alert_reconcile_applied_max}; check for a mass downgrade."
        )
        capture_alert(report.alert, {"alert": "reconcile_applied_spike", "run_id": str(report.run_id)})
    with uow:
        uow.session.execute(
            update(ReconcileRun)
            .where(ReconcileRun.id == report.run_id)
            .values(
                finished_at=report.finished_at, examined=report.examined, applied=report.applied,
                drift=report.drift, errors=report.errors, list_calls=report.list_calls, error=report.error,
            )
            .execution_options(synchronize_session=False)
        )
        record_metric(
            uow, RECONCILE_RUN, value=1,
            tags={"mode": report.mode, "trigger": report.trigger, "examined": report.examined,
                  "applied": report.applied, "drift": report.drift, "errors": report.errors,
                  "completed": report.error is None,
                  **({TEST_TAG: True} if report.trigger == QA_TRIGGER else {})},
            dedupe_key=f"reconcile_run:{report.run_id}",
        )
        if report.mode == "apply":
            audit.record(uow, actor=report.actor, action="reconcile.run", result="error" if report.error else "ok",
                         target=f"run:{report.run_id}",
                         details={"applied": report.applied, "errors": report.errors, "trigger": report.trigger},
                         error=report.error)
        uow.commit()


def run_reconciliation(
    *,
    settings: Settings,
    uow: UnitOfWork,
    gateway: StripeGateway,
    apply: bool,
    actor: str,
    trigger: str,
    now: int | None = None,
) -> ReconcileReport:
    """One run over every subscription. `uow` is un-entered; each step commits its
    own short transaction so a crash leaves every finished step recorded. A run is refused
    (ReconcileRefused, audited) while preflight-blocking configuration is missing, and an apply
    run (switches.Paused, audited) while the `reconcile` kill switch is on."""
    _refuse_if_misconfigured(settings, uow, apply=apply, trigger=trigger, actor=actor)
    if apply:
        try:
            refuse_if_paused(uow, "reconcile", actor=actor, action="reconcile.apply")
        except Paused as paused:  # the page and CLI already show a ReconcileError in one line
            raise ReconcileError(str(paused)) from None
    now = int(time.time()) if now is None else int(now)
    lookahead = settings.reconcile_cron_lookahead_seconds
    run = _start_run(uow, apply=apply, trigger=trigger, actor=actor, lookahead=lookahead)
    report = ReconcileReport(
        run_id=run.id, mode=run.mode, trigger=trigger, actor=actor, started_at=run.started_at, now=now,
        lookahead_seconds=lookahead,
    )
    list_calls_before = gateway.stats.list_calls
    try:
        if apply:
            for recovered in _recover_stale_pending(uow, gateway, run_id=run.id, settings=settings, actor=actor):
                report.actions.append(recovered)
                report.applied += recovered.result == "applied"
                report.errors += recovered.result == "error"
        db_plans = _db_plans(uow)
        findings: list[ActionReport] = []
        due_list: list[DueDowngrade] = []
        for subscription in gateway.list_subscriptions():
            report.examined += 1
            due, found = evaluate(subscription, db_plans.get(subscription["id"]), settings=settings, now=now,
                                  lookahead_seconds=lookahead)
            findings.extend(found)
            if due is not None:
                due_list.append(due)
        report.list_calls = gateway.stats.list_calls - list_calls_before
        _price_lost_revenue(gateway, findings)
        _carry_decisions(uow, findings)
        _store_findings(uow, run.id, findings)
        for finding in findings:
            report.actions.append(finding)
            if finding.kind in DRIFT_KINDS:
                report.drift += finding.result == "reported"
            elif finding.result == "error":
                report.errors += 1
        for due in due_list:
            report.actions.append(_process_due(uow, gateway, run.id, due, apply=apply, settings=settings,
                                               actor=actor, report=report))
    except StripeGatewayError as error:
        report.error = f"Stripe error while listing subscriptions: {error.message}"
        report.list_calls = gateway.stats.list_calls - list_calls_before
    except Exception as error:
        # Record the failed run before re-raising, so history shows it (and its
        # pending action, if any, is picked up by the next run).
        report.error = f"{error.__class__.__name__}: {error}"
        report.list_calls = gateway.stats.list_calls - list_calls_before
        _finish_run(uow, report, settings)
        raise
    _finish_run(uow, report, settings)
    return report


def _process_due(
    uow: UnitOfWork, gateway: StripeGateway, run_id: int, due: DueDowngrade, *, apply: bool,
    settings: Settings, actor: str, report: ReconcileReport,
) -> ActionReport:
    subscription_id = due.subscription["id"]
    if not apply:
        planned = ActionReport(subscription_id, APPLY_DOWNGRADE, "planned", before=due.before, after=due.after,
                               idempotency_key=due.key)
        _store_findings(uow, run_id, [planned])
        report.planned += 1
        return planned
    outcome, claimed = _claim(uow, run_id, due)
    if outcome != "go":
        return claimed
    assert claimed.action_id is not None
    updated, error = _send_downgrade(gateway, subscription_id, due.params, due.key)
    finished = _finish_downgrade(uow, claimed.action_id, run_id=run_id, updated=updated, error=error,
                                 settings=settings, actor=actor)
    report.applied += finished.result == "applied"
    report.errors += finished.result == "error"
    return finished


def run_reconcile_cron(runtime: Runtime, *, holder: str, now: int | None = None) -> ReconcileReport | None:
    """The worker's cron tick: one apply run per interval across all workers.
    The lease lasts one interval and is not released, so it is also the window."""
    settings: Settings = runtime.settings
    if not settings.reconcile_cron_enabled:
        return None
    if not acquire_lease(runtime.uow(), RECONCILE_LEASE, holder, settings.reconcile_cron_interval_seconds, now):
        return None
    paused = switch_state(runtime.uow(), "reconcile")
    if paused.paused:
        _record_skipped_run(runtime.uow(), paused, settings)
        return None
    return run_reconciliation(settings=settings, uow=runtime.uow(), gateway=runtime.gateway, apply=True,
                              actor="cron", trigger="cron", now=now)


def _record_skipped_run(uow: UnitOfWork, paused: SwitchState, settings: Settings) -> None:
    """A cron tick while the reconcile switch is on: a run row saying so, nothing examined."""
    moment = utcnow()
    with uow:
        uow.session.add(ReconcileRun(started_at=moment, finished_at=moment, mode="skipped", trigger="cron",
                                     actor="cron", lookahead_seconds=settings.reconcile_cron_lookahead_seconds,
                                     error=f"skipped: reconcile paused by {paused.by} since {paused.since_text} "
                                           f"({paused.reason})"))
        uow.commit()


# --- output -------------------------------------------------------------------------------
def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def run_to_json(report: ReconcileReport) -> dict[str, Any]:
    """The `billing-ops reconcile --json` document (docs/reconcile.schema.json)."""
    return {
        "run_id": report.run_id,
        "mode": report.mode,
        "trigger": report.trigger,
        "actor": report.actor,
        "started_at": _iso(report.started_at),
        "finished_at": _iso(report.finished_at),
        "duration_seconds": round(report.duration_seconds, 3),
        "now": report.now,
        "lookahead_seconds": report.lookahead_seconds,
        "counts": {
            "examined": report.examined,
            "applied": report.applied,
            "planned": report.planned,
            "drift": report.drift,
            "errors": report.errors,
            "list_calls": report.list_calls,
        },
        "error": report.error,
        "alert": report.alert,
        "actions": [
            {
                "action_id": action.action_id,
                "subscription_id": action.subscription_id,
                "kind": action.kind,
                "result": action.result,
                "idempotency_key": action.idempotency_key,
                "before": action.before,
                "after": {k: v for k, v in action.after.items() if k != "stripe_params"},
                "error": action.error,
            }
            for action in report.actions
        ],
    }


def format_run_table(report: ReconcileReport) -> str:
    lines = [
        f"Reconciliation run {report.run_id} ({report.mode}, {report.trigger}) "
        f"in {report.duration_seconds:.1f} s",
        f"examined {report.examined}  applied {report.applied}  planned {report.planned}  "
        f"drift {report.drift}  errors {report.errors}  list calls {report.list_calls}",
    ]
    if report.error:
        lines.append(f"RUN ERROR: {report.error}")
    if report.alert:
        lines.append(f"ALERT: {report.alert}")
    if report.actions:
        lines.append("")
        lines.append(f"{'subscription':<32} {'kind':<32} {'result':<9} detail")
        for action in report.actions:
            detail = action.error or action.after.get("problem") or ""
            if action.kind == APPLY_DOWNGRADE and not action.error:
                detail = f"{action.before.get('plan')} -> {action.after.get('plan')} ({action.idempotency_key})"
            lines.append(f"{action.subscription_id:<32} {action.kind:<32} {action.result:<9} {detail}")
    else:
        lines.append("No downgrades due and no drift found.")
    return "\n".join(lines)


# --- page-facing ----------------------------------------------------------------------------
@privileged("reconcile.dry_run")
def run_now_dry_run(*, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway) -> ReconcileReport:
    return run_reconciliation(settings=settings, uow=uow, gateway=gateway, apply=False, actor=actor, trigger="page")


def _fix_params(kind: str, subscription: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """The Stripe update that fixes a drift kind, or None when the fix is DB-only."""
    if kind == DRIFT_PENDING_WITHOUT_CANCEL:
        # cancel_at_period_end was unset (e.g. resumed in the portal): the customer
        # stays; the leftover pending_plan is removed so nothing downgrades later.
        return {"metadata": {"pending_plan": "", "pending_interval": ""}}
    if kind == DRIFT_PENDING_PAST_PERIOD_END:
        state = _state(subscription, settings)
        interval = state["pending_interval"] or state["interval"] or "monthly"
        price = settings.price_id(state["pending_plan"] or "", interval)
        subscription_item_id = item_id(subscription)
        if price is None or subscription_item_id is None:
            raise ReconcileError("The pending plan has no price in the plan mapping; fix the mapping first.")
        return {
            "items": [{"id": subscription_item_id, "price": price}],
            "proration_behavior": DOWNGRADE_PRORATION,
            "cancel_at_period_end": False,
            "metadata": {"pending_plan": "", "pending_interval": ""},
        }
    return None


@dataclass(frozen=True)
class FixResult:
    action_id: int
    subscription_id: str
    kind: str
    result: str
    description: str


def describe_fix(kind: str) -> str:
    return {
        DRIFT_PENDING_WITHOUT_CANCEL: "Stripe: remove metadata.pending_plan (the subscription stays on its plan).",
        DRIFT_PENDING_PAST_PERIOD_END: (
            "Stripe: switch the item to the pending plan's price now (no proration), "
            "set cancel_at_period_end=false and remove pending_plan."
        ),
        DRIFT_PLAN_MISMATCH: "Billing DB: reload the subscription from Stripe (Stripe is the source of truth).",
        DRIFT_MISSING_IN_DB: "Billing DB: import the subscription from Stripe.",
        DRIFT_UNKNOWN_PRICE: "No automatic fix: add the price to the plan mapping (STRIPE_PRICE_<PLAN>_<INTERVAL>).",
        LOST_CUSTOMER: "No downgrade can be applied to an ended subscription: re-subscribe the customer on the "
                       "pending plan, or mark it handled with a reason (Lost customers).",
    }.get(kind, "No fix for this kind.")


ENDED_REFUSAL = (
    "The subscription has ended in Stripe, so a downgrade can no longer be applied to it. The customer is lost: "
    "re-subscribe them on the pending plan, or mark it handled with a reason (Lost customers)."
)


@privileged("reconcile.fix_drift")
def apply_drift_fix(
    action_id: int, *, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
) -> FixResult:
    """Fix one reported drift finding, after the admin confirmed it on the page."""
    with uow:
        action = uow.session.get(ReconcileAction, int(action_id))
        if action is None or action.kind not in DRIFT_KINDS:
            raise ReconcileError("No such drift finding.")
        if action.result in ("fixed", "dismissed"):
            raise ReconcileError(f"This finding was already {action.result}.")
        kind, subscription_id = action.kind, action.stripe_subscription_id
    key = f"drift-fix:{kind}:{subscription_id}:{action_id}"

    def refuse(message: str) -> ReconcileError:
        # Refused before any change reaches Stripe: audited, and not a plan-change error
        # (no CHANGE_ERROR point, so the plan-change alert does not fire for it).
        with uow:
            audit.record(uow, actor=actor, action="reconcile.fix_drift", result="refused", target=subscription_id,
                         idempotency_key=key, details={"kind": kind, "action_id": action_id}, error=message)
            uow.commit()
        return ReconcileError(message)

    if not has_working_fix(kind):
        raise refuse(describe_fix(kind))
    try:
        subscription = gateway.retrieve_subscription(subscription_id)
        if kind in (DRIFT_PENDING_WITHOUT_CANCEL, DRIFT_PENDING_PAST_PERIOD_END):
            if subscription.get("status") in _ENDED_STATUSES:
                raise refuse(ENDED_REFUSAL)
            if not (subscription.get("metadata") or {}).get("pending_plan"):
                raise refuse("This drift is gone already (pending_plan is no longer set); run again.")
        try:
            params = _fix_params(kind, subscription, settings)
        except ReconcileError as error:
            raise refuse(error.message) from None
        if params is not None:
            subscription = gateway.update_subscription(subscription_id, params, idempotency_key=key)
    except StripeGatewayError as error:
        with uow:
            record_metric(uow, CHANGE_ERROR, tags={"kind": f"fix:{kind}"})
            audit.record(uow, actor=actor, action="reconcile.fix_drift", result="error", target=subscription_id,
                         idempotency_key=key, details={"kind": kind, "action_id": action_id}, error=error.message)
            uow.commit()
        raise
    with uow:
        row = uow.session.get(ReconcileAction, int(action_id))
        assert row is not None
        before_plan = (row.before or {}).get("plan")
        upsert_subscription(
            uow, subscription, observed_at=fresh_observed_at(uow, subscription_id), settings=settings
        )
        if kind == DRIFT_PENDING_PAST_PERIOD_END:
            state = _state(subscription, settings)
            record_plan_change(uow, subscription_id, kind="downgrade_applied", actor=actor, from_plan=before_plan,
                               to_plan=state["plan"], details={"idempotency_key": key, "drift_fix": True})
        row.result = "fixed"
        row.after = {**(row.after or {}), "fixed_by": actor, "fixed_at": utcnow().isoformat(),
                     "fix": describe_fix(kind), "stripe_state": _state(subscription, settings)}
        audit.record(uow, actor=actor, action="reconcile.fix_drift", result="ok", target=subscription_id,
                     idempotency_key=key, details={"kind": kind, "action_id": action_id})
        uow.commit()
    return FixResult(int(action_id), subscription_id, kind, "fixed", describe_fix(kind))


# --- read queries for the page ------------------------------------------------------------
def recent_runs(uow: UnitOfWork, *, limit: int = 50, qa: bool = False) -> list[dict[str, Any]]:
    """The run history: production runs, or (qa=True) only the QA matrix's own runs."""
    with uow:
        which = ReconcileRun.trigger == QA_TRIGGER if qa else ReconcileRun.trigger != QA_TRIGGER
        runs = uow.session.execute(
            select(ReconcileRun).where(which).order_by(ReconcileRun.id.desc()).limit(limit)).scalars()
        return [
            {
                "run": run.id,
                "started": run.started_at,
                "mode": run.mode,
                "trigger": run.trigger,
                "actor": run.actor,
                "examined": run.examined,
                "applied": run.applied,
                "drift": run.drift,
                "errors": run.errors,
                "list calls": run.list_calls,
                "duration (s)": round((run.finished_at - run.started_at).total_seconds(), 2)
                if run.finished_at else None,
                "status": "running" if run.finished_at is None else ("failed" if run.error else "completed"),
                "error": run.error,
            }
            for run in runs
        ]


def run_actions(uow: UnitOfWork, run_id: int) -> list[dict[str, Any]]:
    with uow:
        rows = uow.session.execute(
            select(ReconcileAction).where(ReconcileAction.run_id == run_id).order_by(ReconcileAction.id)
        ).scalars()
        return [_action_row(row) for row in rows]


def _action_row(row: ReconcileAction) -> dict[str, Any]:
    before, after = row.before or {}, row.after or {}
    return {
        "action": row.id,
        "run": row.run_id,
        "subscription": row.stripe_subscription_id,
        "kind": row.kind,
        "result": row.result,
        "before": _short_state(before),
        "after": after.get("problem") or _short_state(after),
        "idempotency key": row.idempotency_key,
        "error": row.error,
    }


def _short_state(state: dict[str, Any]) -> str:
    if not state:
        return ""
    parts = [f"{state.get('plan') or state.get('price') or '?'} {state.get('interval') or ''}".strip()]
    if "cancel_at_period_end" in state:
        parts.append(f"cancel_at_period_end={str(bool(state['cancel_at_period_end'])).lower()}")
    if state.get("pending_plan"):
        parts.append(f"pending_plan={state['pending_plan']}")
    end = from_unix(state.get("current_period_end"))
    if end:
        parts.append(f"period end {end.isoformat(timespec='minutes')}")
    return ", ".join(parts)


# Kinds whose "Apply fix" works; the others get no button (dismiss them with a reason instead).
FIXABLE_KINDS = frozenset({DRIFT_PENDING_WITHOUT_CANCEL, DRIFT_PENDING_PAST_PERIOD_END, DRIFT_PLAN_MISMATCH,
                           DRIFT_MISSING_IN_DB})
MIN_DISMISS_REASON = 10


def has_working_fix(kind: str) -> bool:
    return kind in FIXABLE_KINDS


def last_run(uow: UnitOfWork, *, mode: str) -> dict[str, Any] | None:
    """The latest finished run of one mode ("apply" or "dry-run"): a dry-run never stands in for
    the last applied run."""
    with uow:
        run = uow.session.execute(
            select(ReconcileRun).where(ReconcileRun.finished_at.is_not(None), ReconcileRun.mode == mode,
                                      ReconcileRun.trigger != QA_TRIGGER)  # QA runs are shown on their own
            .order_by(ReconcileRun.id.desc())
        ).scalars().first()
        if run is None:
            return None
        return {"run": run.id, "mode": run.mode, "trigger": run.trigger, "actor": run.actor,
                "started": run.started_at, "finished": run.finished_at, "examined": run.examined,
                "applied": run.applied, "drift": run.drift, "errors": run.errors, "error": run.error}


def latest_drift(uow: UnitOfWork, *, mode: str = "apply", include_dismissed: bool = False) -> list[dict[str, Any]]:
    """Drift findings of the latest finished run of `mode`; dismissed ones only when asked."""
    latest = last_run(uow, mode=mode)
    if latest is None:
        return []
    with uow:
        statement = (
            select(ReconcileAction)
            .where(ReconcileAction.run_id == latest["run"], ReconcileAction.kind.in_(DRIFT_KINDS))
            .order_by(ReconcileAction.id)
        )
        if not include_dismissed:
            statement = statement.where(ReconcileAction.result.not_in(DECIDED_RESULTS))
        rows = uow.session.execute(statement).scalars()
        return [
            {**_action_row(row), "fix": describe_fix(row.kind), "fixable": has_working_fix(row.kind),
             "dismissed": (f"{(row.after or {}).get('dismissed_by')}: {(row.after or {}).get('dismissed_reason')}"
                           if row.result == "dismissed" else "")}
            for row in rows
        ]


@privileged("reconcile.dismiss_finding")
def dismiss_finding(action_id: int, reason: str, *, actor: str, settings: Settings, uow: UnitOfWork) -> FixResult:
    """Set a finding aside with a written reason (audited); it is hidden by default afterwards."""
    reason = (reason or "").strip()
    with uow:
        action = uow.session.get(ReconcileAction, int(action_id))
        if action is None or action.kind not in DRIFT_KINDS:
            raise ReconcileError("No such drift finding.")
        target = action.stripe_subscription_id
        refusal = None
        if len(reason) < MIN_DISMISS_REASON:
            refusal = f"Write why this finding is dismissed ({MIN_DISMISS_REASON}+ characters)."
        elif action.result != "reported":
            refusal = f"This finding is already {action.result}."
        if refusal:
            audit.record(uow, actor=actor, action="reconcile.dismiss_finding", result="refused", target=target,
                         details={"action_id": int(action_id), "kind": action.kind}, error=refusal)
            uow.commit()
            raise ReconcileError(refusal)
        action.result = "dismissed"
        action.after = {**(action.after or {}), "dismissed_by": actor, "dismissed_reason": reason,
                        "dismissed_at": utcnow().isoformat()}
        audit.record(uow, actor=actor, action="reconcile.dismiss_finding", result="ok", target=target,
                     details={"action_id": int(action_id), "kind": action.kind, "reason": reason})
        uow.commit()
        return FixResult(int(action_id), target, action.kind, "dismissed", reason)


def reconcile_alert(uow: UnitOfWork, *, settings: Settings) -> str | None:
    """The runbook's alerts: the latest run applied more than the threshold, or the
    last runs all failed."""
    with uow:
        runs = list(
            uow.session.execute(
                select(ReconcileRun).where(ReconcileRun.finished_at.is_not(None), ReconcileRun.mode == "apply",
                                      ReconcileRun.trigger != QA_TRIGGER)
                .order_by(ReconcileRun.id.desc()).limit(3)
            ).scalars()
        )
    if not runs:
        return None
    latest = runs[0]
    if latest.applied > settings.alert_reconcile_applied_max:
        return (f"Run {latest.id} applied {latest.applied} downgrades, more than the alert threshold of "
                f"{settings.alert_reconcile_applied_max}.")
    if len(runs) >= 2 and all(run.error or run.errors for run in runs[:2]):
        return "The last reconciliation runs had errors; check the actions below."
    return None
