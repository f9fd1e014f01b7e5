"""The plan-change page per role: look up, preview with proration, confirm an
upgrade, schedule a downgrade, see pending downgrades; nothing for others."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, Customer, UserSubscription
from db.session import UnitOfWork
from tests.conftest import app_test_for, page_direct_test, page_text
from tests.integration.reconcile_fixtures import fake_stripe_runtime, subscription


@pytest.fixture
def page_runtime(migrated_sqlite_url: str) -> Iterator[Any]:
    with fake_stripe_runtime(migrated_sqlite_url, [
        subscription("sub_basic", price="price_basic_monthly", customer="cus_ada"),
        subscription("sub_pending", price="price_pro_monthly", customer="cus_bob", cancel_at_period_end=True,
                     pending_plan="basic"),
    ], [{"id": "cus_ada", "email": "ada@customer.io"}, {"id": "cus_bob", "email": "bob@customer.io"}]) as runtime:
        yield runtime


def _look_up(at: Any, term: str) -> None:
    next(t for t in at.text_input if t.label.startswith("Customer email")).input(term)
    next(b for b in at.button if b.label == "Look up").click()
    at.run()


def _preview(at: Any, plan: str, interval: str = "monthly") -> None:
    next(s for s in at.selectbox if s.label == "New plan").set_value(plan)
    next(s for s in at.selectbox if s.label == "Interval").set_value(interval)
    next(b for b in at.button if b.label == "Preview change").click()
    at.run()


def test_admin_previews_and_confirms_an_upgrade(page_runtime: Any) -> None:
    at = app_test_for("plan_changes", "admin")
    assert not at.exception
    assert "sub_pending" in page_text(at)  # the pending downgrades table
    _look_up(at, "ada@customer.io")
    assert list(at.dataframe[0].value["subscription_id"]) == ["sub_basic"]
    _preview(at, "pro")
    text = page_text(at)
    assert "upgrade, now" in text
    assert "10.00 USD" in text  # proration: -5.00 unused basic + 15.00 remaining pro
    assert page_runtime.gateway.updates == []
    next(b for b in at.button if b.label == "Apply this change…").click()
    at.run()
    assert "invoices the proration of **10.00 USD** immediately" in page_text(at)
    assert "Customer: <ada@customer.io> (cus_ada)" in page_text(at)
    next(b for b in at.button if b.label == "Confirm").click()
    at.run()
    assert not at.exception
    assert "Upgrade: sub_basic → pro." in page_text(at)
    [(sub_id, params, key)] = page_runtime.gateway.updates
    assert sub_id == "sub_basic" and params["proration_behavior"] == "always_invoice"
    assert key == "upgrade:sub_basic:price_basic_monthly:price_pro_monthly"
    with page_runtime.uow() as uow:
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id="sub_basic")).scalar_one()
        assert row.plan == "pro"
        entry = uow.session.execute(select(AuditLog).filter_by(action="plan.upgrade")).scalar_one()
        assert (entry.actor, entry.result, entry.target) == ("admin@example.com", "ok", "sub_basic")


def test_admin_schedules_a_downgrade_and_sees_it_pending(page_runtime: Any) -> None:
    page_runtime.gateway.subscriptions["sub_basic"]["items"]["data"][0]["price"]["id"] = "price_pro_yearly"
    page_runtime.gateway.subscriptions["sub_basic"]["items"]["data"][0]["price"]["unit_amount"] = 30000
    at = app_test_for("plan_changes", "admin")
    _look_up(at, "sub_basic")
    _preview(at, "basic", "yearly")
    assert "downgrade, at period end" in page_text(at)
    next(b for b in at.button if b.label == "Apply this change…").click()
    at.run()
    assert "no proration credit" in page_text(at)
    next(b for b in at.button if b.label == "Confirm").click()
    at.run()
    assert not at.exception
    sub = page_runtime.gateway.subscriptions["sub_basic"]
    assert sub["cancel_at_period_end"] is True
    assert sub["metadata"] == {"pending_plan": "basic", "pending_interval": "yearly"}
    pending = at.dataframe[-1].value
    assert set(pending["subscription_id"]) == {"sub_basic", "sub_pending"}


def test_a_refused_change_shows_one_message_and_changes_nothing(page_runtime: Any) -> None:
    at = app_test_for("plan_changes", "admin")
    _look_up(at, "bob@customer.io")
    next(b for b in at.button if b.label == "Resume (undo cancellation)…").click()
    at.run()  # resume clears the pending downgrade: allowed, after the confirmation
    assert page_runtime.gateway.updates == []
    assert "Customer: <bob@customer.io> (cus_bob)" in page_text(at)
    next(b for b in at.button if b.label == "Confirm").click()
    at.run()
    assert page_runtime.gateway.subscriptions["sub_pending"]["cancel_at_period_end"] is False
    next(b for b in at.button if b.label == "Cancel the scheduled downgrade…").click()
    at.run()
    assert "This subscription has no scheduled downgrade." in page_text(at)
    assert not [b for b in at.button if b.label == "Confirm"]  # no dialog for a change that cannot work
    assert len(page_runtime.gateway.updates) == 1


def test_non_admin_and_signed_out_see_nothing(page_runtime: Any) -> None:
    for role in ("non_admin", "signed_out"):
        for at in (page_direct_test("plan_changes", role), app_test_for("plan_changes", role)):
            text = page_text(at)
            assert "sub_pending" not in text and "Pending downgrades" not in text and not at.dataframe
            assert not at.text_input
        assert "No access" in page_text(page_direct_test("plan_changes", role))
    with UnitOfWork(page_runtime.settings.database_url) as uow:
        assert uow.session.execute(select(Customer)).scalars().all()  # data existed, and was not shown


def test_a_subscription_missing_from_the_db_can_still_be_changed(page_runtime: Any) -> None:
    page_runtime.gateway.subscriptions["sub_new"] = subscription("sub_new", price="price_basic_monthly")
    at = app_test_for("plan_changes", "admin")
    _look_up(at, "sub_new")
    assert "not in the billing DB yet" in page_text(at)
    _preview(at, "pro")
    next(b for b in at.button if b.label == "Apply this change…").click()
    at.run()
    next(b for b in at.button if b.label == "Confirm").click()
    at.run()
    assert not at.exception
    with page_runtime.uow() as uow:
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id="sub_new")).scalar_one()
        assert row.plan == "pro"


def test_a_link_with_a_customer_opens_its_lookup(page_runtime: Any) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO_ROOT, identity_for

    at = AppTest.from_file(str(REPO_ROOT / "app_pages" / "plan_changes.py"), default_timeout=30)
    at.session_state["identity"] = identity_for("admin@example.com")
    at.query_params["customer"] = "cus_linked"
    at.run()
    field = next(t for t in at.text_input if t.label.startswith("Customer email"))
    assert field.value == "cus_linked"
