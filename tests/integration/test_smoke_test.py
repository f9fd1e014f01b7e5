"""The guided live smoke test (issue 24, part 3) on SQLite and PostgreSQL against the emulator:
Checkout Session created through the gateway, completed by the emulator's documented helper,
checkout.session.completed stored and processed through the receiver's path, the checks in
order, one confirmed refund-and-cancel, the checklist ticked; refusals audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, ChecklistItem, SmokeTest
from services import smoke_test, webhooks
from services.smoke_test import SmokeTestError
from services.stripe_gateway import StripeGatewayError
from tests.conftest import ADMIN_EMAIL


@pytest.fixture
def smoke_world(emulator: Any, runtime_factory: Any, migrated_url: str) -> tuple[Any, dict[str, Any]]:
    prices = emulator.admin("seed", {"customers": 0})["prices"]
    rt = runtime_factory(DATABASE_URL=migrated_url, STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(prices),
                         STRIPE_SMOKE_TEST_PRICE=prices["basic"]["monthly"])
    return rt, prices


def deliver_events(rt: Any) -> int:
    """Every event the emulator emitted, through the receiver's store-then-process path."""
    for event in sorted(rt.gateway.list_events(), key=lambda e: (e["created"], e["id"])):
        webhooks.ingest_event(rt, event, source="webhook", process=False)
    return webhooks.process_pending(rt, limit=1000)


def _audit(rt: Any, action: str) -> list[tuple[str, str | None]]:
    with rt.uow() as uow:
        return [(r.result, r.error) for r in uow.session.execute(
            select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).scalars()]


def _ctx(rt: Any) -> dict[str, Any]:
    return {"actor": ADMIN_EMAIL, "settings": rt.settings, "uow": rt.uow(), "gateway": rt.gateway}


def test_smoke_test_runs_end_to_end_and_ticks_the_checklist(smoke_world: Any, emulator: Any) -> None:
    rt, prices = smoke_world
    price = rt.gateway.retrieve_price(prices["basic"]["monthly"])
    started = smoke_test.start(**_ctx(rt))
    assert started["status"] == "open" and started["checkout_url"].startswith("https://checkout.stripe.com/")
    assert smoke_test.qr_png(started["checkout_url"]).startswith(b"\x89PNG")
    session = rt.gateway.retrieve_checkout_session(started["checkout_session_id"])
    assert session["mode"] == "subscription" and session["metadata"] == {"smoke_test": str(started["id"])}

    emulator.admin(f"checkout/sessions/{session['id']}/complete", {"payment_method": "pm_card_visa"})
    assert deliver_events(rt) > 0
    completed = smoke_test.get(rt.uow(), started["id"])
    assert completed is not None and completed["status"] == "completed" and completed["subscription_id"]

    checked = smoke_test.run_checks(started["id"], **_ctx(rt))
    assert checked["status"] == "checked", checked["steps"]
    assert [s["step"] for s in checked["steps"]] == ["checkout_created", "checkout_completed",
                                                      "subscription_active", "billing_db", "portal_session"]
    assert all(s["passed"] for s in checked["steps"])
    assert checked["amount"] == price["unit_amount"] and checked["amount_text"].endswith(" USD")
    assert checked["steps"][4]["ids"]["portal_session"].startswith("bps_")
    # A second check (another open page) changes nothing.
    assert smoke_test.run_checks(started["id"], **_ctx(rt))["steps"] == checked["steps"]

    with pytest.raises(SmokeTestError, match="not the payment's"):
        smoke_test.refund_and_cancel(started["id"], confirmed_amount=checked["amount"] + 1, **_ctx(rt))
    done = smoke_test.refund_and_cancel(started["id"], confirmed_amount=checked["amount"], **_ctx(rt))
    assert done["status"] == "passed" and done["passed"] and done["refund_id"].startswith("re_")
    # Stripe's side, through the real SDK.
    assert rt.gateway.retrieve_subscription(done["subscription_id"])["status"] == "canceled"
    charges = list(rt.gateway.list_charges(payment_intent=done["payment_intent_id"]))
    assert charges and charges[0]["refunded"] and charges[0]["amount_refunded"] == price["unit_amount"]

    with rt.uow() as uow:
        item = uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == "live_test_charge")).scalar_one()
        assert item.status == "done" and f"Smoke test #{started['id']} passed in test mode" in (item.note or "")
    assert [r for r, _e in _audit(rt, "smoke.start")] == ["ok"]
    assert [r for r, _e in _audit(rt, "smoke.check")] == ["ok"]
    assert [r for r, _e in _audit(rt, "smoke.refund_and_cancel")] == ["refused", "ok"]
    frozen = smoke_test.frozen_for_signoff(rt.uow())
    assert frozen is not None and frozen["passed"] and len(frozen["steps"]) == 7
    # Smoke-test activity is test activity: replaying the events records no production point.
    deliver_events(rt)
    from services import metric_points as m
    from services.metrics import board

    with rt.uow() as uow:
        start = min(r.started_at for r in uow.session.execute(select(SmokeTest)).scalars())
    assert board(rt.uow(), start=start.replace(minute=0, second=0), end=start.replace(year=start.year + 1)
                 ).totals[m.INVOICE_PAID] == 0


def test_checks_stop_at_the_first_failure(smoke_world: Any, emulator: Any) -> None:
    rt, _prices = smoke_world
    started = smoke_test.start(**_ctx(rt))
    emulator.admin(f"checkout/sessions/{started['checkout_session_id']}/complete", {"payment_method": "pm_card_visa"})
    deliver_events(rt)
    run = smoke_test.get(rt.uow(), started["id"])
    assert run is not None
    rt.gateway.cancel_subscription(run["subscription_id"], idempotency_key="test:cancel-before-checks")
    checked = smoke_test.run_checks(started["id"], **_ctx(rt))
    assert checked["status"] == "failed"
    assert [(s["step"], s["passed"]) for s in checked["steps"]][-1] == ("subscription_active", False)
    assert "status canceled" in checked["steps"][-1]["detail"]
    assert _audit(rt, "smoke.check") == [("error", "failed: subscription_active")]


def test_start_is_refused_without_a_usable_price(emulator: Any, runtime_factory: Any, migrated_url: str) -> None:
    prices = emulator.admin("seed", {"customers": 0})["prices"]
    rt = runtime_factory(DATABASE_URL=migrated_url, STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(prices))
    with pytest.raises(SmokeTestError, match="STRIPE_SMOKE_TEST_PRICE"):
        smoke_test.start(**_ctx(rt))
    missing = runtime_factory(DATABASE_URL=migrated_url, STRIPE_SMOKE_TEST_PRICE="price_doesnotexist")
    with pytest.raises(SmokeTestError, match="no such object"):
        smoke_test.start(**_ctx(missing))
    assert [r for r, _e in _audit(rt, "smoke.start")] == ["refused", "refused"]
    with rt.uow() as uow:
        assert uow.session.execute(select(SmokeTest)).first() is None


def test_emulator_portal_sessions_follow_stripes_shape(emulator: Any, make_settings: Any) -> None:
    import stripe

    from services.stripe_gateway import StripeGateway

    emulator.admin("seed", {"customers": 0})
    gateway = StripeGateway(make_settings())
    customer = gateway.create_customer({"email": "portal@example.com"}, idempotency_key="test:portal-customer")
    portal = gateway.create_portal_session({"customer": customer["id"], "return_url": "https://example.com/a"},
                                           idempotency_key="test:portal")
    expected = set(stripe.billing_portal.Session.__annotations__) - {"OBJECT_NAME"}
    assert set(portal) == expected
    assert portal["object"] == "billing_portal.session" and portal["url"].startswith("https://billing.stripe.com/")
    assert portal["customer"] == customer["id"] and portal["return_url"] == "https://example.com/a"
    with pytest.raises(StripeGatewayError) as missing:
        gateway.create_portal_session({"customer": "cus_missing"}, idempotency_key="test:portal-missing")
    assert missing.value.code == "resource_missing"
    emulator.admin("reset")
    lonely = gateway.create_customer({"email": "p2@example.com"}, idempotency_key="test:portal-customer-2")
    with pytest.raises(StripeGatewayError, match="default configuration"):
        gateway.create_portal_session({"customer": lonely["id"]}, idempotency_key="test:portal-none")


def test_sign_off_freezes_the_latest_smoke_test(migrated_url: str) -> None:
    from db.models.base import utcnow
    from services.runtime import Runtime
    from services.signoff import launch_record, sign, summary_markdown
    from tests.integration.golive_fixtures import ENG_LEAD, FakePreflightGateway, golive_settings, make_launch_ready
    from tests.integration.test_signoff import _record_results

    rt = Runtime(golive_settings(migrated_url))
    rt.__dict__["gateway"] = FakePreflightGateway()
    make_launch_ready(rt)
    _record_results(rt)
    steps = [{"step": name, "title": title, "passed": True, "detail": "ok", "ids": {}, "at": "2026-12-04T10:00:00"}
             for name, title in smoke_test.STEPS]
    with rt.uow() as uow:
        uow.session.add(SmokeTest(started_by=ADMIN_EMAIL, mode="test", price_id="price_small", status="passed",
                                  amount=900, currency="usd", steps=steps, subscription_id="sub_smoke",
                                  finished_at=utcnow(), finished_by=ADMIN_EMAIL))
        uow.commit()
    signed = sign("eng_lead", actor=ENG_LEAD, settings=rt.settings, uow=rt.uow(), runtime=rt)
    frozen = signed["preflight"]["smoke_test"]
    assert frozen["passed"] and frozen["amount_text"] == "9.00 USD" and frozen["subscription_id"] == "sub_smoke"
    # A later run never edits the frozen copy.
    with rt.uow() as uow:
        uow.session.add(SmokeTest(started_by=ADMIN_EMAIL, mode="test", price_id="price_small", status="open",
                                  steps=[]))
        uow.commit()
    record = launch_record(rt.uow(), version=signed["code_version"])
    assert record is not None and record.signatures[0]["preflight"]["smoke_test"] == frozen
    summary = summary_markdown(record)
    assert f"#{frozen['id']} in test mode: PASSED, 9.00 USD" in summary and "Payment refunded: pass" in summary


def test_a_failed_check_can_run_again_once_fixed(smoke_world: Any, emulator: Any) -> None:
    rt, _prices = smoke_world
    portal = rt.gateway.list_portal_configurations()[0]
    configurations = rt.gateway.client.v1.billing_portal.configurations
    configurations.update(portal["id"], {"active": False})  # the portal is switched off at Stripe
    started = smoke_test.start(**_ctx(rt))
    emulator.admin(f"checkout/sessions/{started['checkout_session_id']}/complete", {"payment_method": "pm_card_visa"})
    deliver_events(rt)
    failed = smoke_test.run_checks(started["id"], **_ctx(rt))
    assert failed["status"] == "failed" and failed["steps"][-1]["step"] == "portal_session"
    assert "default configuration" in failed["steps"][-1]["detail"]
    assert smoke_test.run_checks(started["id"], **_ctx(rt))["status"] == "failed"  # not again unless asked
    configurations.update(portal["id"], {"active": True})
    checked = smoke_test.run_checks(started["id"], again=True, **_ctx(rt))
    assert checked["status"] == "checked"
    assert [s["step"] for s in checked["steps"]].count("portal_session") == 1 and all(
        s["passed"] for s in checked["steps"])
    assert [r for r, _e in _audit(rt, "smoke.check")] == ["error", "ok"]


def test_a_new_run_expires_an_unpaid_one_and_waits_for_a_paid_one(smoke_world: Any, emulator: Any) -> None:
    rt, _prices = smoke_world
    first = smoke_test.start(**_ctx(rt))
    second = smoke_test.start(**_ctx(rt))
    abandoned = smoke_test.get(rt.uow(), first["id"])
    assert abandoned is not None and abandoned["status"] == "abandoned"
    assert "expired at Stripe" in abandoned["steps"][-1]["detail"]
    assert rt.gateway.retrieve_checkout_session(first["checkout_session_id"])["status"] == "expired"
    with pytest.raises(Exception, match="400"):  # nobody can pay the abandoned one any more
        emulator.admin(f"checkout/sessions/{first['checkout_session_id']}/complete", {})
    emulator.admin(f"checkout/sessions/{second['checkout_session_id']}/complete", {"payment_method": "pm_card_visa"})
    deliver_events(rt)
    with pytest.raises(SmokeTestError, match=f"#{second['id']} was paid and is not refunded yet"):
        smoke_test.start(**_ctx(rt))
    assert smoke_test.latest(rt.uow())["id"] == second["id"]  # type: ignore[index]
    assert [r for r, _e in _audit(rt, "smoke.start")] == ["ok", "ok", "refused"]
