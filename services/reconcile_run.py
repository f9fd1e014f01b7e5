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

import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from db.models import ReconcileAction, ReconcileRun
from db.models.base import utcnow
from db.repositories import reconciliation as reconcile_rows
from db.session import UnitOfWork
from services import audit
from services import reconcile_rules as rules
from services.config import Settings
from services.leases import acquire_lease
from services.metric_points import CHANGE_ERROR, DOWNGRADE_APPLIED, RECONCILE_RUN, TEST_TAG, record_metric
from services.observability import capture_alert
from services.plan_changes import (
    fresh_observed_at,
    monthly_amount,
    record_plan_change,
)
from services.reconcile_rules import APPLY_DOWNGRADE, ActionReport, DueDowngrade, ReconcileReport
from services.runtime import Runtime
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.stripe_mapping import upsert_subscription
from services.switches import SwitchState, refuse_if_paused, switch_state
from services.webhook_counts import QA_TRIGGER

RECONCILE_LEASE = "reconcile"

# A `pending` action older than this whose run never finished belongs to a dead
# worker; the next run completes it (same key, so Stripe replays).
STALE_PENDING_SECONDS = 600



def _refuse_if_misconfigured(settings: Settings, uow: UnitOfWork, *, apply: bool, trigger: str, actor: str) -> None:
    blockers = rules.configuration_blockers(settings)
    if not blockers:
        return
    message = "Reconciliation refused: " + " ".join(blockers)
    with uow:
        audit.record(uow, actor=actor, action="reconcile.run", result="refused", target="reconcile",
                     details={"mode": "apply" if apply else "dry-run", "trigger": trigger, "reasons": blockers},
                     error=message)
        uow.commit()
    raise rules.ReconcileRefused(message)


def _start_run(uow: UnitOfWork, *, apply: bool, trigger: str, actor: str, lookahead: int) -> ReconcileRun:
    with uow:
        run = ReconcileRun(
            started_at=utcnow(), mode="apply" if apply else "dry-run", trigger=trigger, actor=actor,
            lookahead_seconds=lookahead,
        )
        reconcile_rows.add(uow, run)
        uow.commit()
        return run


def _db_plans(uow: UnitOfWork) -> dict[str, tuple[str | None, str | None]]:
    with uow:
        return reconcile_rows.subscription_plans(uow)


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
        rows = reconcile_rows.decided_findings(uow, rules.DRIFT_KINDS, (*DECIDED_RESULTS, "fixed"))
        decided: dict[tuple[str, str], ReconcileAction] = {}
        for row in rows:
            if row.result == "fixed" and row.kind != rules.LOST_CUSTOMER:
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
        price_id = finding.after.get("pending_price") if finding.kind == rules.LOST_CUSTOMER else None
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
        reconcile_rows.add_actions(uow, rows)
        for report, row in zip(batch, rows, strict=True):
            report.action_id = row.id
        uow.commit()


def _claim(uow: UnitOfWork, run_id: int, due: DueDowngrade) -> tuple[str, ActionReport]:
    """Record intent before calling Stripe. Returns ("go"|"done"|"busy", action)."""
    subscription_id = due.subscription["id"]
    with uow:
        reconcile_rows.lock_claims(uow)
        existing = reconcile_rows.claimed(uow, key=due.key, kind=APPLY_DOWNGRADE)
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
        reconcile_rows.add(uow, row)
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
        action = reconcile_rows.action(uow, action_id)
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
            after["stripe_state"] = rules.subscription_state(updated, settings)
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
        rows = reconcile_rows.stale_pending(uow, kind=APPLY_DOWNGRADE, run_id=run_id, stale_before=stale_before)
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
        reconcile_rows.finish_run(
            uow, report.run_id, finished_at=report.finished_at, examined=report.examined, applied=report.applied,
            drift=report.drift, errors=report.errors, list_calls=report.list_calls, error=report.error,
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
    if apply:  # Paused is a ConsoleError: the page (run_action) and the CLI show it in one line as it is
        refuse_if_paused(uow, "reconcile", actor=actor, action="reconcile.apply")
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
            due, found = rules.evaluate(subscription, db_plans.get(subscription["id"]), settings=settings, now=now,
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
            if finding.kind in rules.DRIFT_KINDS:
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
        reconcile_rows.add(uow, ReconcileRun(
            started_at=moment, finished_at=moment, mode="skipped", trigger="cron", actor="cron",
            lookahead_seconds=settings.reconcile_cron_lookahead_seconds,
            error=f"skipped: reconcile paused by {paused.by} since {paused.since_text} ({paused.reason})"))
        uow.commit()
