"""Manual subscription corrections (issue 24 part 2, rollback "Manual corrections") on SQLite and
PostgreSQL against the emulator: previewed before/after, one update per correction with its own
idempotency key, stored and audited; stale previews and impossible corrections refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, PlanChange, UserSubscription
from services import corrections
from services.corrections import CorrectionError
from tests.conftest import ADMIN_EMAIL


def make_world(emulator: Any, runtime_factory: Any, database_url: str) -> tuple[Any, dict[str, Any], str]:
    """The catalogue, and one customer on pro monthly (created at Stripe, not mirrored yet)."""
    prices = emulator.admin("seed", {"customers": 0})["prices"]
    rt = runtime_factory(DATABASE_URL=database_url, STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(prices))
    gateway = rt.gateway
    customer = gateway.create_customer({"email": "fix@example.com", "name": "Fix Me"}, idempotency_key="t:cus")
    pm = gateway.attach_payment_method("pm_card_visa", customer["id"], idempotency_key="t:pm")
    subscription = gateway.create_subscription(
        {"customer": customer["id"], "items": [{"price": prices["pro"]["monthly"]}],
         "default_payment_method": pm["id"]}, idempotency_key="t:sub")
    return rt, prices, subscription["id"]


@pytest.fixture
def world(emulator: Any, runtime_factory: Any, migrated_url: str) -> tuple[Any, dict[str, Any], str]:
    return make_world(emulator, runtime_factory, migrated_url)


def _ctx(rt: Any) -> dict[str, Any]:
    return {"settings": rt.settings, "uow": rt.uow(), "gateway": rt.gateway}


def _audits(rt: Any) -> list[AuditLog]:
    with rt.uow() as uow:
        return list(uow.session.execute(select(AuditLog).where(AuditLog.action == "subscription.correct")
                                        .order_by(AuditLog.id)).scalars())


def test_each_correction_is_previewed_applied_once_and_audited(world: Any) -> None:
    rt, prices, sid = world
    preview = corrections.describe_correction(sid, "set_cancel_at_period_end", **_ctx(rt))
    assert preview.before["cancel_at_period_end"] is False and preview.after["cancel_at_period_end"] is True
    assert preview.idempotency_key == f"correction:{sid}:set_cancel_at_period_end:1"
    assert "Fix Me <fix@example.com>" in preview.customer
    assert [r["field"] for r in preview.rows() if r["changes"]] == ["cancel_at_period_end"]
    result = corrections.apply_correction(preview, actor=ADMIN_EMAIL, **_ctx(rt))
    assert result.after["cancel_at_period_end"] is True
    assert rt.gateway.retrieve_subscription(sid)["cancel_at_period_end"] is True
    # The same preview again is stale: refused before Stripe, audited.
    with pytest.raises(CorrectionError, match="changed since the preview"):
        corrections.apply_correction(preview, actor=ADMIN_EMAIL, **_ctx(rt))

    invoices_before = len(list(rt.gateway.list_invoices(subscription=sid)))
    price = corrections.describe_correction(sid, "change_price", price_id=prices["basic"]["monthly"], **_ctx(rt))
    assert price.before["plan"] == "pro monthly" and price.after["plan"] == "basic monthly"
    assert price.after["amount"].endswith("USD per month") and price.idempotency_key.endswith(":change_price:2")
    corrections.apply_correction(price, actor=ADMIN_EMAIL, **_ctx(rt))
    stripe_sub = rt.gateway.retrieve_subscription(sid)
    assert stripe_sub["items"]["data"][0]["price"]["id"] == prices["basic"]["monthly"]
    assert len(list(rt.gateway.list_invoices(subscription=sid))) == invoices_before  # proration none

    rt.gateway.update_subscription(sid, {"metadata": {"pending_plan": "basic", "pending_interval": "monthly"}},
                                   idempotency_key="t:pending")
    clear = corrections.describe_correction(sid, "clear_pending_plan", **_ctx(rt))
    assert clear.before["pending_plan"] == "basic" and clear.after["pending_plan"] is None
    assert any("ENDS at the period end" in note for note in clear.notes)
    corrections.apply_correction(clear, actor=ADMIN_EMAIL, **_ctx(rt))
    assert "pending_plan" not in rt.gateway.retrieve_subscription(sid)["metadata"]
    unset = corrections.describe_correction(sid, "clear_cancel_at_period_end", **_ctx(rt))
    corrections.apply_correction(unset, actor=ADMIN_EMAIL, **_ctx(rt))

    with rt.uow() as uow:
        row = uow.session.execute(select(UserSubscription).where(
            UserSubscription.stripe_subscription_id == sid)).scalar_one()
        assert (row.plan, row.cancel_at_period_end, row.pending_plan) == ("basic", False, None)
        history = list(uow.session.execute(select(PlanChange).where(PlanChange.kind == "correction")).scalars())
        assert len(history) == 4
    audits = _audits(rt)
    assert [a.result for a in audits] == ["ok", "refused", "ok", "ok", "ok"]
    assert audits[0].details["before"]["cancel_at_period_end"] is False
    assert audits[0].details["after"]["cancel_at_period_end"] is True
    assert len({a.idempotency_key for a in audits if a.result == "ok"}) == 4


def test_impossible_corrections_are_refused_before_stripe(world: Any, emulator: Any) -> None:
    rt, prices, sid = world
    emulator.clear_requests()
    for kind, price_id, match in [("clear_cancel_at_period_end", None, "not set to cancel"),
                                  ("clear_pending_plan", None, "no pending plan"),
                                  ("change_price", prices["pro"]["monthly"], "already on"),
                                  ("change_price", None, "Choose the price"),
                                  ("undo_everything", None, "Unknown correction")]:
        with pytest.raises(CorrectionError, match=match):
            corrections.describe_correction(sid, kind, price_id=price_id, **_ctx(rt))
    with pytest.raises(CorrectionError, match="starts with sub_"):
        corrections.describe_correction("cus_123", "set_cancel_at_period_end", **_ctx(rt))
    assert not [r for r in emulator.requests() if r.get("method") == "POST"]
    rt.gateway.cancel_subscription(sid, idempotency_key="t:cancel")
    with pytest.raises(CorrectionError, match="only a live subscription"):
        corrections.describe_correction(sid, "set_cancel_at_period_end", **_ctx(rt))
