"""Reconciliation runs against the billing DB (SQLite and PostgreSQL) with an
in-memory gateway: exactly-once downgrades, overlapping runs, crash recovery,
drift, errors, alerts, leases and the JSON document."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import func, select

from db.models import AuditLog, MetricPoint, PlanChange, ReconcileAction, ReconcileRun, UserSubscription
from db.session import UnitOfWork
from services import reconcile_run, reconciliation
from services.auth import AccessDenied
from services.leases import acquire_lease, lease_holder, release_lease
from services.metric_points import CHANGE_ERROR, DOWNGRADE_APPLIED, RECONCILE_RUN
from services.reconciliation import (
    DRIFT_MISSING_IN_DB,
    DRIFT_PENDING_PAST_PERIOD_END,
    DRIFT_PENDING_WITHOUT_CANCEL,
    DRIFT_PLAN_MISMATCH,
    DRIFT_UNKNOWN_PRICE,
    ReconcileError,
    apply_drift_fix,
    format_run_table,
    run_reconcile_cron,
    run_reconciliation,
    run_to_json,
)
from services.stripe_gateway import StripeGatewayError
from services.stripe_mapping import upsert_subscription
from tests.integration.reconcile_fixtures import ADMIN, NOW, FakeGateway, as_gateway, settings_for, subscription

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "reconcile.schema.json").read_text())


def _due(sub_id: str = "sub_due", **kw: Any) -> dict[str, Any]:
    return subscription(sub_id, cancel_at_period_end=True, pending_plan="basic", period_end=NOW + 600, **kw)


def _sync_db(url: str, gateway: FakeGateway, settings: Any) -> None:
    with UnitOfWork(url) as uow:
        for sub in gateway.subscriptions.values():
            upsert_subscription(uow, sub, observed_at=NOW - 100, settings=settings)
        uow.commit()


def _run(url: str, gateway: Any, settings: Any, *, apply: bool = True, now: int = NOW) -> Any:
    return run_reconciliation(settings=settings, uow=UnitOfWork(url), gateway=gateway, apply=apply,
                              actor="cli", trigger="manual", now=now)


def _count(url: str, model: Any, *where: Any) -> int:
    with UnitOfWork(url) as uow:
        return int(uow.session.execute(select(func.count()).select_from(model).where(*where)).scalar() or 0)


def test_due_downgrade_is_applied_once_and_recorded(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([_due(), subscription("sub_far", cancel_at_period_end=True, pending_plan="basic",
                                                period_end=NOW + 3600)])
    _sync_db(migrated_url, gateway, settings)

    report = _run(migrated_url, gateway, settings)

    assert report.applied == 1 and report.errors == 0 and report.examined == 2
    assert [u[0] for u in gateway.updates] == ["sub_due"]
    sub_id, params, key = gateway.updates[0]
    assert key == f"downgrade:sub_due:{NOW + 600}"
    assert params == {"items": [{"id": "si_due", "price": "price_basic_monthly"}], "proration_behavior": "none",
                      "cancel_at_period_end": False, "metadata": {"pending_plan": "", "pending_interval": ""}}
    stripe_sub = gateway.subscriptions["sub_due"]
    assert stripe_sub["cancel_at_period_end"] is False and "pending_plan" not in stripe_sub["metadata"]
    assert gateway.subscriptions["sub_far"]["metadata"] == {"pending_plan": "basic"}  # outside the lookahead
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id="sub_due")).scalar_one()
        assert (row.plan, row.pending_plan, row.cancel_at_period_end) == ("basic", None, False)
        action = uow.session.execute(select(ReconcileAction).filter_by(kind="apply_downgrade")).scalar_one()
        assert (action.result, action.idempotency_key) == ("applied", key)
        assert action.before["plan"] == "pro" and action.after["plan"] == "basic"
        run = uow.session.get(ReconcileRun, report.run_id)
        assert run is not None and run.finished_at is not None and (run.applied, run.examined) == (1, 2)
        changes = uow.session.execute(select(PlanChange).filter_by(stripe_subscription_id="sub_due")).scalars().all()
        assert [(c.kind, c.from_plan, c.to_plan) for c in changes] == [("downgrade_applied", "pro", "basic")]
        audit_row = uow.session.execute(select(AuditLog).filter_by(action="reconcile.apply_downgrade")).scalar_one()
        assert (audit_row.result, audit_row.target, audit_row.idempotency_key) == ("ok", "sub_due", key)
    assert _count(migrated_url, MetricPoint, MetricPoint.name == DOWNGRADE_APPLIED) == 1
    assert _count(migrated_url, MetricPoint, MetricPoint.name == RECONCILE_RUN) == 1

    again = _run(migrated_url, gateway, settings)
    assert again.applied == 0 and len(gateway.updates) == 1
    assert _count(migrated_url, ReconcileAction, ReconcileAction.kind == "apply_downgrade") == 1


def test_dry_run_plans_without_changing_anything(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([_due()])
    _sync_db(migrated_url, gateway, settings)
    report = _run(migrated_url, gateway, settings, apply=False)
    assert report.planned == 1 and report.applied == 0 and gateway.updates == []
    assert [a.result for a in report.actions] == ["planned"]
    assert gateway.subscriptions["sub_due"]["metadata"] == {"pending_plan": "basic"}
    assert _count(migrated_url, AuditLog) == 0


def test_two_overlapping_runs_update_stripe_once(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([_due()])
    gateway.update_delay = 0.3  # keep the first call in flight while the second run arrives
    _sync_db(migrated_url, gateway, settings)
    reports: list[Any] = []
    threads = [threading.Thread(target=lambda: reports.append(_run(migrated_url, gateway, settings)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(gateway.updates) == 1 and gateway.replays == 0
    assert sorted(r.applied for r in reports) == [0, 1]
    assert _count(migrated_url, ReconcileAction, ReconcileAction.kind == "apply_downgrade") == 1
    assert _count(migrated_url, MetricPoint, MetricPoint.name == DOWNGRADE_APPLIED) == 1


def test_crash_after_stripe_call_is_completed_by_next_run(migrated_url: str, monkeypatch: Any) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([_due()])
    _sync_db(migrated_url, gateway, settings)
    real_finish = reconcile_run._finish_downgrade

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker killed before the DB write")

    monkeypatch.setattr(reconcile_run, "_finish_downgrade", crash)
    with pytest.raises(RuntimeError):
        _run(migrated_url, gateway, settings)
    assert len(gateway.updates) == 1  # Stripe changed, the DB did not
    with UnitOfWork(migrated_url) as uow:
        action = uow.session.execute(select(ReconcileAction).filter_by(kind="apply_downgrade")).scalar_one()
        assert action.result == "pending"
        crashed_run = uow.session.get(ReconcileRun, action.run_id)
        assert crashed_run is not None and crashed_run.error and "worker killed" in crashed_run.error

    monkeypatch.setattr(reconcile_run, "_finish_downgrade", real_finish)
    report = _run(migrated_url, gateway, settings)

    assert report.applied == 1
    assert len(gateway.updates) == 1 and gateway.replays == 1  # replayed, not changed twice
    with UnitOfWork(migrated_url) as uow:
        actions = uow.session.execute(select(ReconcileAction).filter_by(kind="apply_downgrade")).scalars().all()
        assert len(actions) == 1 and actions[0].result == "applied"
        assert actions[0].after["completed_by_run"] == report.run_id
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id="sub_due")).scalar_one()
        assert row.plan == "basic" and row.pending_plan is None
    assert _count(migrated_url, MetricPoint, MetricPoint.name == DOWNGRADE_APPLIED) == 1
    assert _run(migrated_url, gateway, settings).applied == 0


def test_more_than_250_subscriptions_are_all_examined(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    subs = [subscription(f"sub_{i:04d}", period_end=NOW + 86400) for i in range(260)]
    subs.append(_due("sub_9999"))  # sorts last: on the third page
    gateway = FakeGateway(subs)
    _sync_db(migrated_url, gateway, settings)
    report = _run(migrated_url, gateway, settings)
    assert report.examined == 261 and report.list_calls == 3
    assert report.applied == 1 and gateway.updates[0][0] == "sub_9999"


def test_each_kind_of_drift_is_reported_and_left_alone(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([
        subscription("sub_nocancel", pending_plan="basic", cancel_at_period_end=False),
        subscription("sub_past", pending_plan="basic", cancel_at_period_end=True, period_end=NOW - 60),
        subscription("sub_mismatch", price="price_pro_monthly"),
        subscription("sub_unknown", price="price_legacy_2019"),
        subscription("sub_missing"),
    ])
    _sync_db(migrated_url, gateway, settings)
    with UnitOfWork(migrated_url) as uow:
        uow.session.execute(select(UserSubscription))
        for row in uow.session.execute(select(UserSubscription)).scalars():
            if row.stripe_subscription_id == "sub_mismatch":
                row.plan = "basic"
            if row.stripe_subscription_id == "sub_missing":
                uow.session.delete(row)
        uow.commit()

    report = _run(migrated_url, gateway, settings)

    found = {(a.subscription_id, a.kind) for a in report.actions}
    assert found == {
        ("sub_nocancel", DRIFT_PENDING_WITHOUT_CANCEL),
        ("sub_past", DRIFT_PENDING_PAST_PERIOD_END),
        ("sub_mismatch", DRIFT_PLAN_MISMATCH),
        ("sub_unknown", DRIFT_UNKNOWN_PRICE),
        ("sub_missing", DRIFT_MISSING_IN_DB),
    }
    assert report.drift == 5 and report.applied == 0 and gateway.updates == []
    assert _count(migrated_url, ReconcileAction, ReconcileAction.result == "reported") == 5


def test_stripe_error_on_one_subscription_is_recorded_and_the_run_continues(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([_due("sub_a"), _due("sub_b")])
    gateway.fail_updates["sub_a"] = StripeGatewayError("The card was declined.", code="card_declined",
                                                       http_status=402)
    _sync_db(migrated_url, gateway, settings)
    report = _run(migrated_url, gateway, settings)
    assert report.applied == 1 and report.errors == 1 and report.error is None
    by_sub = {a.subscription_id: a for a in report.actions}
    assert by_sub["sub_a"].result == "error" and by_sub["sub_a"].error == "The card was declined."
    assert by_sub["sub_b"].result == "applied"
    with UnitOfWork(migrated_url) as uow:
        failed = uow.session.execute(select(ReconcileAction).filter_by(stripe_subscription_id="sub_a")).scalar_one()
        assert (failed.result, failed.error) == ("error", "The card was declined.")
    assert _count(migrated_url, MetricPoint, MetricPoint.name == CHANGE_ERROR) == 1

    gateway.fail_updates.clear()  # a later run retries the failed one with the same key
    assert _run(migrated_url, gateway, settings).applied == 1
    assert gateway.subscriptions["sub_a"]["metadata"] == {}


def test_listing_failure_ends_the_run_with_its_error(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([_due()])
    gateway.fail_list = StripeGatewayError("Could not reach Stripe (network error); nothing was changed.")
    report = _run(migrated_url, gateway, settings)
    assert report.error and "Could not reach Stripe" in report.error
    with UnitOfWork(migrated_url) as uow:
        run = uow.session.get(ReconcileRun, report.run_id)
        assert run is not None and run.finished_at is not None and run.error == report.error
    assert "RUN ERROR" in format_run_table(report)


def test_alert_when_one_run_applies_more_than_the_threshold(migrated_url: str, monkeypatch: Any) -> None:
    alerts: list[tuple[str, dict[str, str]]] = []
    monkeypatch.setattr(reconcile_run, "capture_alert", lambda message, tags: alerts.append((message, tags)))
    settings = settings_for(migrated_url, ALERT_RECONCILE_APPLIED_MAX="2")
    gateway = FakeGateway([_due(f"sub_{i}") for i in range(3)])
    _sync_db(migrated_url, gateway, settings)
    report = _run(migrated_url, gateway, settings)
    assert report.applied == 3 and report.alert and "threshold of 2" in report.alert
    assert alerts and alerts[0][1]["alert"] == "reconcile_applied_spike"
    assert reconciliation.reconcile_alert(UnitOfWork(migrated_url), settings=settings) is not None
    document = run_to_json(report)
    jsonschema.validate(document, SCHEMA)
    assert document["alert"] == report.alert


def test_json_document_validates_against_the_schema(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([_due(), subscription("sub_unknown", price="price_legacy_2019")])
    _sync_db(migrated_url, gateway, settings)
    for apply in (False, True):
        document = run_to_json(_run(migrated_url, gateway, settings, apply=apply))
        jsonschema.validate(json.loads(json.dumps(document, default=str)), SCHEMA)
        assert {a["kind"] for a in document["actions"]} == {"apply_downgrade", DRIFT_UNKNOWN_PRICE}
        assert all("stripe_params" not in a["after"] for a in document["actions"])


def test_two_workers_racing_for_the_lease_get_it_once(migrated_url: str) -> None:
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2)

    def take(holder: str) -> None:
        barrier.wait()
        results[holder] = acquire_lease(UnitOfWork(migrated_url), "reconcile", holder, 420, NOW)

    threads = [threading.Thread(target=take, args=(name,)) for name in ("worker-a", "worker-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [False, True]
    winner = next(name for name, won in results.items() if won)
    assert lease_holder(UnitOfWork(migrated_url), "reconcile", NOW) == winner
    # Within the window nobody (not even the holder) takes it again; after it expires anyone can.
    assert not acquire_lease(UnitOfWork(migrated_url), "reconcile", winner, 420, NOW + 100)
    assert acquire_lease(UnitOfWork(migrated_url), "reconcile", "worker-c", 420, NOW + 421)
    assert not release_lease(UnitOfWork(migrated_url), "reconcile", winner)
    assert release_lease(UnitOfWork(migrated_url), "reconcile", "worker-c")
    assert lease_holder(UnitOfWork(migrated_url), "reconcile", NOW + 421) is None


def test_cron_runs_once_per_window_across_workers(migrated_url: str) -> None:
    from services.runtime import Runtime

    settings = settings_for(migrated_url, RECONCILE_CRON_ENABLED="true")
    gateway = FakeGateway([_due()])
    gateway.update_delay = 0.2
    _sync_db(migrated_url, gateway, settings)
    runtime = Runtime(settings)
    runtime.__dict__["gateway"] = gateway  # the cached_property slot
    reports: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def tick(holder: str) -> None:
        barrier.wait()
        reports[holder] = run_reconcile_cron(runtime, holder=holder, now=NOW)

    threads = [threading.Thread(target=tick, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ran = [r for r in reports.values() if r is not None]
    assert len(ran) == 1 and ran[0].applied == 1 and ran[0].trigger == "cron"
    assert len(gateway.updates) == 1
    assert _count(migrated_url, ReconcileRun) == 1
    assert run_reconcile_cron(runtime, holder="w1", now=NOW + 60) is None  # same window
    assert run_reconcile_cron(runtime, holder="w2", now=NOW + 421) is not None  # next window


def test_apply_drift_fix_is_admin_only_audited_and_changes_what_it_says(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([
        subscription("sub_nocancel", pending_plan="basic", cancel_at_period_end=False),
        subscription("sub_missing"),
        subscription("sub_unknown", price="price_legacy_2019"),
    ])
    _sync_db(migrated_url, gateway, settings)
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id="sub_missing")).scalar_one()
        uow.session.delete(row)
        uow.commit()
    report = _run(migrated_url, gateway, settings, apply=False)
    ids = {a.kind: a.action_id for a in report.actions}

    with pytest.raises(AccessDenied):
        apply_drift_fix(ids[DRIFT_PENDING_WITHOUT_CANCEL], actor="viewer@outside.io", settings=settings,
                        uow=UnitOfWork(migrated_url), gateway=as_gateway(gateway))
    assert gateway.updates == []

    fixed = apply_drift_fix(ids[DRIFT_PENDING_WITHOUT_CANCEL], actor=ADMIN, settings=settings,
                            uow=UnitOfWork(migrated_url), gateway=as_gateway(gateway))
    assert fixed.result == "fixed"
    assert gateway.subscriptions["sub_nocancel"]["metadata"] == {}
    assert gateway.subscriptions["sub_nocancel"]["items"]["data"][0]["price"]["id"] == "price_pro_monthly"
    apply_drift_fix(ids[DRIFT_MISSING_IN_DB], actor=ADMIN, settings=settings, uow=UnitOfWork(migrated_url),
                    gateway=as_gateway(gateway))
    assert _count(migrated_url, UserSubscription, UserSubscription.stripe_subscription_id == "sub_missing") == 1
    with pytest.raises(ReconcileError):
        apply_drift_fix(ids[DRIFT_UNKNOWN_PRICE], actor=ADMIN, settings=settings, uow=UnitOfWork(migrated_url),
                        gateway=as_gateway(gateway))
    with pytest.raises(ReconcileError, match="already fixed"):
        apply_drift_fix(ids[DRIFT_MISSING_IN_DB], actor=ADMIN, settings=settings, uow=UnitOfWork(migrated_url),
                        gateway=as_gateway(gateway))
    with UnitOfWork(migrated_url) as uow:
        results = [(r.actor, r.result) for r in uow.session.execute(
            select(AuditLog).filter_by(action="reconcile.fix_drift").order_by(AuditLog.id)).scalars()]
    assert results == [("viewer@outside.io", "denied"), (ADMIN, "ok"), (ADMIN, "ok"), (ADMIN, "refused")]
    assert len(gateway.updates) == 1
