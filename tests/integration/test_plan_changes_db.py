"""Plan-change services against the billing DB (SQLite and PostgreSQL): each
change's Stripe params and key, the stored state, history, metrics and audit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, MetricPoint, PlanChange, UserSubscription
from db.session import UnitOfWork
from services import plan_changes, plan_preview
from services.auth import AccessDenied
from services.metric_points import (
    CHANGE_ERROR,
    DOWNGRADE_SCHEDULED,
    PLAN_CHANGED,
    SUBSCRIPTION_CHANGE,
    SUBSCRIPTION_PREVIEW,
)
from services.plan_changes import PlanChangeError
from services.stripe_gateway import StripeGatewayError
from services.stripe_mapping import upsert_subscription
from tests.integration.reconcile_fixtures import ADMIN, NOW, FakeGateway, settings_for, subscription


@pytest.fixture
def world(migrated_url: str) -> tuple[Any, FakeGateway, str]:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([subscription("sub_1", price="price_basic_monthly", period_end=NOW + 86400)])
    with UnitOfWork(migrated_url) as uow:
        upsert_subscription(uow, gateway.subscriptions["sub_1"], observed_at=1, settings=settings)
        uow.commit()
    return settings, gateway, migrated_url


def _kw(world: tuple[Any, FakeGateway, str], actor: str = ADMIN) -> dict[str, Any]:
    settings, gateway, url = world
    return {"actor": actor, "settings": settings, "uow": UnitOfWork(url), "gateway": gateway}


def _metrics(url: str) -> list[str]:
    with UnitOfWork(url) as uow:
        return sorted(m.name for m in uow.session.execute(select(MetricPoint)).scalars())


def _audit(url: str) -> list[tuple[str, str, str | None, str | None]]:
    with UnitOfWork(url) as uow:
        return [(a.action, a.result, a.target, a.actor)
                for a in uow.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars()]


def test_preview_of_an_upgrade_shows_the_proration(world: Any) -> None:
    settings, gateway, url = world
    preview = plan_preview.preview_change("sub_1", "pro", "monthly", settings=settings, uow=UnitOfWork(url),
                                          gateway=gateway)
    assert (preview.direction, preview.current_plan, preview.target_price_id) == ("upgrade", "basic",
                                                                                 "price_pro_monthly")
    assert preview.proration_amount == -500 + 1500
    assert gateway.updates == [] and _metrics(url) == [SUBSCRIPTION_PREVIEW]


def test_upgrade_is_immediate_prorated_stored_and_audited(world: Any) -> None:
    _settings, gateway, url = world
    result = plan_changes.upgrade("sub_1", "pro", "monthly", **_kw(world))
    [(sub_id, params, key)] = gateway.updates
    assert key == "upgrade:sub_1:price_basic_monthly:price_pro_monthly" == result.idempotency_key
    assert params["proration_behavior"] == "always_invoice"
    assert params["items"] == [{"id": "si_1", "price": "price_pro_monthly"}]
    assert gateway.subscriptions["sub_1"]["metadata"] == {"plan": "pro", "interval": "monthly"}
    with UnitOfWork(url) as uow:
        row = uow.session.execute(select(UserSubscription)).scalar_one()
        assert row.plan == "pro"
        [change] = uow.session.execute(select(PlanChange)).scalars().all()
        assert (change.kind, change.from_plan, change.to_plan, change.actor) == ("upgrade", "basic", "pro", ADMIN)
    assert _metrics(url) == sorted([PLAN_CHANGED, SUBSCRIPTION_CHANGE])
    assert _audit(url) == [("plan.upgrade", "ok", "sub_1", ADMIN)]
    with pytest.raises(PlanChangeError, match="already on this price"):
        plan_changes.upgrade("sub_1", "pro", "monthly", **_kw(world))


def test_downgrade_is_scheduled_the_runbook_way_and_can_be_cancelled(world: Any) -> None:
    _settings, gateway, url = world
    gateway.subscriptions["sub_1"]["items"]["data"][0]["price"] = {
        "id": "price_pro_monthly", "unit_amount": 3000, "recurring": {"interval": "month"}}
    with pytest.raises(PlanChangeError, match="not an upgrade"):
        plan_changes.upgrade("sub_1", "basic", "monthly", **_kw(world))
    result = plan_changes.schedule_downgrade("sub_1", "basic", "monthly", **_kw(world))
    assert result.cancel_at_period_end is True and result.pending_plan == "basic"
    sub = gateway.subscriptions["sub_1"]
    assert sub["items"]["data"][0]["price"]["id"] == "price_pro_monthly"  # unchanged until the period end
    assert sub["metadata"] == {"pending_plan": "basic", "pending_interval": "monthly"}
    with UnitOfWork(url) as uow:
        row = uow.session.execute(select(UserSubscription)).scalar_one()
        assert (row.pending_plan, row.cancel_at_period_end) == ("basic", True)
    assert DOWNGRADE_SCHEDULED in _metrics(url)

    plan_changes.cancel_scheduled_downgrade("sub_1", **_kw(world))
    assert sub["cancel_at_period_end"] is False and sub["metadata"] == {}
    with pytest.raises(PlanChangeError, match="no scheduled downgrade"):
        plan_changes.cancel_scheduled_downgrade("sub_1", **_kw(world))
    # Scheduling again is a new intent: a new key, not a replay of the first one.
    plan_changes.schedule_downgrade("sub_1", "basic", "monthly", **_kw(world))
    keys = [key for _s, _p, key in gateway.updates]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert [a[0] for a in _audit(url)] == ["plan.schedule_downgrade", "plan.cancel_scheduled_downgrade",
                                          "plan.schedule_downgrade"]


def test_cancel_at_period_end_and_resume(world: Any) -> None:
    _settings, gateway, url = world
    with pytest.raises(PlanChangeError, match="nothing to resume"):
        plan_changes.resume("sub_1", **_kw(world))
    plan_changes.cancel_at_period_end("sub_1", **_kw(world))
    assert gateway.subscriptions["sub_1"]["cancel_at_period_end"] is True
    plan_changes.resume("sub_1", **_kw(world))
    assert gateway.subscriptions["sub_1"]["cancel_at_period_end"] is False
    with UnitOfWork(url) as uow:
        kinds = [c.kind for c in uow.session.execute(select(PlanChange).order_by(PlanChange.id)).scalars()]
    assert kinds == ["cancel", "resume"]


def test_non_admin_is_denied_and_audited_and_nothing_is_sent(world: Any) -> None:
    _settings, gateway, url = world
    with pytest.raises(AccessDenied):
        plan_changes.upgrade("sub_1", "pro", "monthly", **_kw(world, actor="viewer@outside.io"))
    assert gateway.updates == []
    assert _audit(url) == [("plan.upgrade", "denied", "sub_1", "viewer@outside.io")]


def test_unknown_plan_and_bad_ids_change_nothing(world: Any) -> None:
    _settings, gateway, url = world
    with pytest.raises(PlanChangeError, match="Unknown plan or interval"):
        plan_changes.upgrade("sub_1", "enterprise", "monthly", **_kw(world))
    with pytest.raises(PlanChangeError, match="starts with sub_"):
        plan_changes.schedule_downgrade("cus_123", "basic", "monthly", **_kw(world))
    assert gateway.updates == [] and _audit(url) == []


def test_stripe_error_is_audited_counted_and_raised(world: Any) -> None:
    _settings, gateway, url = world
    gateway.fail_updates["sub_1"] = StripeGatewayError("The card was declined.", code="card_declined")
    with pytest.raises(StripeGatewayError):
        plan_changes.upgrade("sub_1", "pro", "monthly", **_kw(world))
    assert _audit(url) == [("plan.upgrade", "error", "sub_1", ADMIN)]
    assert _metrics(url) == [CHANGE_ERROR]
    with UnitOfWork(url) as uow:
        assert uow.session.execute(select(UserSubscription)).scalar_one().plan == "basic"
