"""Lost customers on the Stripe emulator with a test clock (SQLite and PostgreSQL): a downgrade
left pending past the period end makes Stripe cancel the subscription; reconciliation reports
"customer lost" with who, when and the monthly revenue lost; the old "apply downgrade" fix is
refused before it reaches Stripe and is no plan-change error; re-subscribing on the pending plan
creates one new subscription (key resubscribe:<old>:<plan>), and the finding stays decided."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import AuditLog, MetricPoint, ReconcileAction
from services import lost_customers
from services.auth import AccessDenied
from services.metric_points import CHANGE_ERROR
from services.reconciliation import (
    DRIFT_PENDING_PAST_PERIOD_END,
    LOST_CUSTOMER,
    ReconcileError,
    apply_drift_fix,
    latest_drift,
)
from tests.conftest import ADMIN_EMAIL
from tests.integration.test_reconciliation_emulator import World


def _lost_world(runtime_factory: Callable[..., Any], database_url: str) -> tuple[World, str, int]:
    world = World(runtime_factory, database_url)
    sub_id, end = world.lose_customer("Lin <b>Lost</b>")
    assert world.gateway.retrieve_subscription(sub_id)["status"] == "canceled"
    return world, sub_id, end


def _change_errors(world: World) -> int:
    with world.runtime.uow() as uow:
        return int(uow.session.execute(select(func.count()).select_from(MetricPoint)
                                       .where(MetricPoint.name == CHANGE_ERROR)).scalar() or 0)


def _posts(emulator: Any) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if str(r.get("method", "")).upper() == "POST"]


def test_lost_customer_is_reported_and_re_subscribed_on_the_pending_plan(
    emulator: Any, runtime_factory: Callable[..., Any], database_url: str
) -> None:
    world, sub_id, end = _lost_world(runtime_factory, database_url)
    report = world.reconcile(now=end + 3600)
    kinds = {a.kind for a in report.actions if a.subscription_id == sub_id}
    assert kinds == {LOST_CUSTOMER} and DRIFT_PENDING_PAST_PERIOD_END not in kinds
    [lost] = lost_customers.lost_customers(world.runtime.uow())
    assert (lost.subscription_id, lost.customer_email, lost.customer_name) == (
        sub_id, world.customer["email"], "Lin <b>Lost</b>")
    assert lost.revenue_text == "10.00 USD / month"  # the basic plan they asked for
    assert lost.ended_at is not None and end <= lost.ended_at <= end + 3600
    [finding] = [f for f in latest_drift(world.runtime.uow()) if f["subscription"] == sub_id]
    assert finding["after"] == "customer lost: downgrade not applied before period end"
    assert finding["fixable"] is False

    # The old fix cannot work: refused before any change reaches Stripe, and no plan-change error.
    kw: dict[str, Any] = {"settings": world.runtime.settings, "uow": world.runtime.uow(), "gateway": world.gateway}
    errors_before = _change_errors(world)
    emulator.clear_requests()
    with pytest.raises(ReconcileError, match="ended"):
        apply_drift_fix(lost.action_id, actor=ADMIN_EMAIL, **kw)
    assert emulator.requests() == [] and _change_errors(world) == errors_before

    with pytest.raises(AccessDenied):
        lost_customers.resubscribe_lost_customer(lost.action_id, actor="viewer@outside.io", **kw)
    assert _posts(emulator) == []

    plan = lost_customers.plan_resubscribe(lost.action_id, **kw)
    assert (plan.amount_text, plan.payment_method) == ("10.00 USD / month", world.payment_method["id"])
    assert _posts(emulator) == []  # planning only reads
    done = lost_customers.resubscribe_lost_customer(lost.action_id, actor=ADMIN_EMAIL, **kw)
    assert done.idempotency_key == f"resubscribe:{sub_id}:basic"
    [create] = [r for r in _posts(emulator) if str(r["path"]).rstrip("/").endswith("/v1/subscriptions")]
    assert create["idempotency_key"] == f"resubscribe:{sub_id}:basic"
    new = world.gateway.retrieve_subscription(done.new_subscription_id)
    assert new["status"] == "active" and new["customer"] == world.customer["id"]
    assert new["items"]["data"][0]["price"]["id"] == world.prices["basic"]
    assert new["default_payment_method"] == world.payment_method["id"]
    assert world.gateway.retrieve_subscription(sub_id)["status"] == "canceled"  # the old one stays ended

    with pytest.raises(ReconcileError, match="already re-subscribed"):
        lost_customers.resubscribe_lost_customer(lost.action_id, actor=ADMIN_EMAIL, **kw)
    assert len([r for r in _posts(emulator) if str(r["path"]).rstrip("/").endswith("/v1/subscriptions")]) == 1

    # The next run sees the same ended subscription: the decision carries over, nothing is open.
    again = world.reconcile(now=end + 3700)
    [carried] = [a for a in again.actions if a.subscription_id == sub_id]
    assert carried.result == "fixed" and carried.after["new_subscription"] == done.new_subscription_id
    assert lost_customers.lost_customers(world.runtime.uow()) == []
    with world.runtime.uow() as uow:
        audits = [(e.actor, e.result) for e in uow.session.execute(
            select(AuditLog).where(AuditLog.action.in_(("reconcile.fix_drift",
                                                        lost_customers.AUDIT_RESUBSCRIBE)))
            .order_by(AuditLog.id)).scalars()]
        stored = uow.session.execute(select(ReconcileAction).where(
            ReconcileAction.stripe_subscription_id == sub_id).order_by(ReconcileAction.id)).scalars().all()
    assert audits == [(ADMIN_EMAIL, "refused"), ("viewer@outside.io", "denied"), (ADMIN_EMAIL, "ok"),
                      (ADMIN_EMAIL, "refused")]
    assert [a.result for a in stored] == ["fixed", "fixed"]
    assert _change_errors(world) == errors_before


def test_a_lost_customer_can_be_marked_handled_with_a_reason(
    emulator: Any, runtime_factory: Callable[..., Any], sqlite_url: str
) -> None:
    world, sub_id, end = _lost_world(runtime_factory, sqlite_url)
    world.reconcile(now=end + 3600)
    [lost] = lost_customers.lost_customers(world.runtime.uow())
    kw: dict[str, Any] = {"settings": world.runtime.settings, "uow": world.runtime.uow()}
    with pytest.raises(ReconcileError, match="Write how"):
        lost_customers.mark_lost_customer_handled(lost.action_id, "ok", actor=ADMIN_EMAIL, **kw)
    lost_customers.mark_lost_customer_handled(lost.action_id, "Called them: they left for good", actor=ADMIN_EMAIL,
                                              **kw)
    assert lost_customers.lost_customers(world.runtime.uow()) == []
    [shown] = lost_customers.lost_customers(world.runtime.uow(), include_decided=True)
    assert shown.decision == f"handled by {ADMIN_EMAIL}: Called them: they left for good"
    assert world.reconcile(now=end + 3700).drift == 0  # stays handled in the next run
