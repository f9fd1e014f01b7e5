"""The first-24h figures of Numzy §13 (issue 24 part 4) on SQLite and PostgreSQL, checked against the
data behind them: Checkout Sessions at the emulator, subscriptions through the webhook path,
downgrades due vs applied, plan-change errors resolved with a note (audited); test-clock, QA and
smoke-test activity left out."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, UserSubscription
from db.models.base import utcnow
from services import audit, launch_figures
from services import metric_points as m
from services.launch_figures import FiguresError
from tests.conftest import ADMIN_EMAIL
from tests.integration.test_smoke_test import deliver_events


def _subscribe(gateway: Any, price: str, card: str, tag: str, **customer: Any) -> dict[str, Any]:
    cus = gateway.create_customer({"email": f"{tag}@example.com", **customer}, idempotency_key=f"t:cus:{tag}")
    pm = gateway.attach_payment_method(card, cus["id"], idempotency_key=f"t:pm:{tag}")
    return dict(gateway.create_subscription({"customer": cus["id"], "items": [{"price": price}],
                                             "default_payment_method": pm["id"]}, idempotency_key=f"t:sub:{tag}"))


@pytest.fixture
def figures_world(emulator: Any, runtime_factory: Any, migrated_url: str) -> dict[str, Any]:
    prices = emulator.admin("seed", {"customers": 0})["prices"]
    rt = runtime_factory(DATABASE_URL=migrated_url, STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(prices))
    gw, basic = rt.gateway, prices["basic"]["monthly"]
    line = [{"price": basic, "quantity": 1}]
    # Keys unique per world: the emulator keeps its idempotency store across a re-seed, so a fixed
    # key would replay the previous world's session.
    run = uuid.uuid4().hex[:8]
    paid = gw.create_checkout_session({"mode": "subscription", "line_items": line}, idempotency_key=f"t:cs1:{run}")
    gw.create_checkout_session({"mode": "subscription", "line_items": line},
                               idempotency_key=f"t:cs2:{run}")  # abandoned
    smoke = gw.create_checkout_session({"mode": "subscription", "line_items": line, "metadata": {"smoke_test": "9"},
                                        "subscription_data": {"metadata": {"smoke_test": "9"}}},
                                       idempotency_key=f"t:cs3:{run}")
    for session in (paid, smoke):
        emulator.admin(f"checkout/sessions/{session['id']}/complete", {"payment_method": "pm_card_visa"})
    _subscribe(gw, basic, "pm_card_visa", "ok")
    # Stripe's documented card for "attaching succeeds, charging fails": the subscription stays incomplete.
    failing = _subscribe(gw, basic, "pm_card_chargeCustomerFail", "fails")
    clock = gw.create_test_clock(int(time.time()), "figures", idempotency_key=f"t:clock:{run}")
    on_clock = _subscribe(gw, basic, "pm_card_chargeCustomerFail", "clock", test_clock=clock["id"])
    deliver_events(rt)
    return {"rt": rt, "failing": failing, "on_clock": on_clock}


def test_success_rate_counts_checkout_and_activation_and_is_frozen(figures_world: dict[str, Any]) -> None:
    rt = figures_world["rt"]
    start, end = utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1)
    rate = launch_figures.success_rate(rt.uow(), rt.gateway, start=start, end=end)
    assert (rate.sessions_completed, rate.sessions_created) == (1, 2)  # the smoke-test session is left out
    assert (rate.subscriptions_active, rate.subscriptions_created) == (2, 3)  # checkout + ok; test clock left out
    assert [r["subscription"] for r in rate.incomplete] == [figures_world["failing"]["id"]]
    assert rate.incomplete[0]["link"] == f"/plan-changes?subscription={figures_world['failing']['id']}"
    assert rate.checkout_rate == 0.5
    # The rows behind it: every subscription the DB holds, test ones included, is accounted for.
    with rt.uow() as uow:
        statuses = sorted(s.status for s in uow.session.execute(select(UserSubscription)).scalars())
    assert statuses == ["active", "active", "active", "incomplete", "incomplete"]
    # A metrics snapshot (and so sign-off) freezes the same figures.
    from services.metrics import create_snapshot, set_golive_time

    ctx = {"actor": ADMIN_EMAIL, "settings": rt.settings, "uow": rt.uow()}
    set_golive_time(utcnow() - timedelta(hours=1), **ctx)
    launch = create_snapshot(hours=24, **ctx)["figures"]["launch"]
    assert (launch["subscriptions_active"], launch["subscriptions_created"]) == (2, 3)
    assert launch["subscriptions_incomplete"] == [figures_world["failing"]["id"]]
    assert (launch["downgrades_applied"], launch["downgrades_due"], launch["change_errors"]) == (0, 0, 0)


def test_downgrades_due_against_applied_and_change_errors_resolved(figures_world: dict[str, Any]) -> None:
    rt = figures_world["rt"]
    failing, on_clock = figures_world["failing"]["id"], figures_world["on_clock"]["id"]
    now = utcnow()
    with rt.uow() as uow:
        for sid in (failing, on_clock):  # both missed their downgrade an hour ago; one is on a test clock
            row = uow.session.execute(select(UserSubscription).where(
                UserSubscription.stripe_subscription_id == sid)).scalar_one()
            row.pending_plan, row.current_period_end = "basic", now - timedelta(hours=1)
        m.record_metric(uow, m.DOWNGRADE_APPLIED, at=now - timedelta(minutes=30), tags={"to_plan": "basic"})
        m.record_metric(uow, m.DOWNGRADE_APPLIED, at=now - timedelta(minutes=30), tags={"test": True})
        for sid in (failing, on_clock):
            audit.record(uow, actor="cron", action="reconcile.apply_downgrade", result="error", target=sid,
                         error="Stripe returned an error.")
        uow.commit()
    start, end = now - timedelta(hours=2), now + timedelta(minutes=1)
    due = launch_figures.downgrades(rt.uow(), start=start, end=end)
    assert (due.applied, due.due) == (1, 2)
    assert [(r["subscription"], r["pending_plan"], r["email"]) for r in due.not_applied] == [
        (failing, "basic", "fails@example.com")]

    errors = launch_figures.change_errors(rt.uow(), start=start, end=end)
    assert [(e["subscription"], e["email"], e["error"], e["resolved"]) for e in errors] == [
        (failing, "fails@example.com", "Stripe returned an error.", False)]
    ctx = {"actor": ADMIN_EMAIL, "settings": rt.settings, "uow": rt.uow()}
    with pytest.raises(FiguresError, match="at least"):
        launch_figures.resolve_change_error(errors[0]["id"], "ok", **ctx)
    launch_figures.resolve_change_error(errors[0]["id"], "Re-applied by hand on the Plan changes page", **ctx)
    with pytest.raises(FiguresError, match="already"):
        launch_figures.resolve_change_error(errors[0]["id"], "Again, twice", **ctx)
    with pytest.raises(FiguresError, match="no such"):
        launch_figures.resolve_change_error(10**9, "Not an error row", **ctx)
    after = launch_figures.change_errors(rt.uow(), start=start, end=end)[0]
    assert after["resolved"] and after["resolved_by"] == ADMIN_EMAIL and after["note"].startswith("Re-applied")
    with rt.uow() as uow:
        results = [r.result for r in uow.session.execute(select(AuditLog).where(
            AuditLog.action == "metrics.resolve_change_error").order_by(AuditLog.id)).scalars()]
    assert results == ["refused", "ok", "refused", "refused"]

