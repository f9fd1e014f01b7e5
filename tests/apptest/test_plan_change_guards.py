"""Cancel at period end, Resume and Cancel a scheduled downgrade each open a
confirmation naming the customer, the amount and the Stripe mode; one click changes
nothing at Stripe (the emulator's subscription is as it was) until Confirm."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import select

from db.models import AuditLog
from services import plan_changes
from services.stripe_mapping import upsert_customer, upsert_subscription
from tests.conftest import ADMIN_EMAIL, app_test_for, page_direct_test, page_text


class Shop:
    """A customer on the emulator with a pro (30.00 USD / month) subscription, mirrored in the DB."""

    def __init__(self, runtime_factory: Callable[..., Any]) -> None:
        bootstrap = runtime_factory()
        client = bootstrap.gateway.client
        suffix = str(time.time_ns())
        product = client.v1.products.create({"name": "Plans"})
        self.prices = {
            name: client.v1.prices.create(
                {"product": product.id, "currency": "usd", "unit_amount": amount, "recurring": {"interval": "month"}},
                {"idempotency_key": f"price:{name}:{suffix}"},
            ).id
            for name, amount in (("basic", 1000), ("pro", 3000))
        }
        self.runtime = runtime_factory(STRIPE_PRICE_BASIC_MONTHLY=self.prices["basic"],
                                       STRIPE_PRICE_PRO_MONTHLY=self.prices["pro"])
        gateway = self.runtime.gateway
        self.customer = gateway.create_customer(
            {"email": f"grace{suffix}@customer.io", "name": "Grace *Hopper*"}, idempotency_key=f"cus:{suffix}"
        )
        pm = gateway.attach_payment_method("pm_card_visa", self.customer["id"], idempotency_key=f"pm:{suffix}")
        self.sub_id = str(gateway.create_subscription(
            {"customer": self.customer["id"], "items": [{"price": self.prices["pro"]}],
             "default_payment_method": pm["id"]},
            idempotency_key=f"sub:{suffix}",
        )["id"])
        self.store()

    def store(self) -> None:
        with self.runtime.uow() as uow:
            upsert_customer(uow, self.customer, observed_at=int(time.time()))
            upsert_subscription(uow, self.stripe(), observed_at=int(time.time()), settings=self.runtime.settings)
            uow.commit()
        st.cache_data.clear()

    def stripe(self) -> dict[str, Any]:
        sub: dict[str, Any] = self.runtime.gateway.retrieve_subscription(self.sub_id)
        return sub

    def watched(self) -> tuple[Any, ...]:
        sub = self.stripe()
        return (sub["status"], sub["cancel_at_period_end"], dict(sub.get("metadata") or {}),
                sub["items"]["data"][0]["price"]["id"])


@pytest.fixture
def shop(runtime_factory: Callable[..., Any]) -> Shop:
    st.cache_data.clear()
    return Shop(runtime_factory)


def _open(shop: Shop, label: str) -> Any:
    at = app_test_for("plan_changes", "admin")
    next(t for t in at.text_input if t.label.startswith("Customer email")).input(shop.sub_id)
    next(b for b in at.button if b.label == "Look up").click()
    at.run()
    next(b for b in at.button if b.label == f"{label}…").click()
    at.run()
    assert not at.exception
    return at


def _confirm(at: Any) -> None:
    next(b for b in at.button if b.label == "Confirm").click()
    at.run()
    assert not at.exception


def _dialog_text(at: Any) -> str:
    return "\n".join(str(t.value) for t in at.text)


def test_cancel_at_period_end_asks_first_and_names_customer_amount_and_mode(shop: Shop) -> None:
    before = shop.watched()
    at = _open(shop, "Cancel at period end")
    text = _dialog_text(at)
    assert f"Grace *Hopper* <{shop.customer['email']}> ({shop.customer['id']})" in text  # plain, not markdown
    assert "30.00 USD per month" in text and "3000" not in text
    assert "Stripe **test** mode" in page_text(at)
    assert shop.watched() == before  # one click: nothing at Stripe
    _confirm(at)
    assert shop.stripe()["cancel_at_period_end"] is True
    assert "Cancel at period end: done" in page_text(at)


def test_resume_asks_first_then_undoes_the_cancellation(shop: Shop) -> None:
    plan_changes.cancel_at_period_end(shop.sub_id, actor=ADMIN_EMAIL, settings=shop.runtime.settings,
                                      uow=shop.runtime.uow(), gateway=shop.runtime.gateway)
    shop.store()
    before = shop.watched()
    at = _open(shop, "Resume (undo cancellation)")
    assert "keeps paying 30.00 USD per month" in _dialog_text(at)
    assert shop.watched() == before
    # Dismissing with Cancel leaves Stripe alone too.
    next(b for b in at.button if b.label == "Cancel" and b.key == "cancel_schedule").click()
    at.run()
    assert shop.watched() == before and not [b for b in at.button if b.label == "Confirm"]
    next(b for b in at.button if b.label == "Resume (undo cancellation)…").click()
    at.run()
    _confirm(at)
    assert shop.stripe()["cancel_at_period_end"] is False


def test_cancel_a_scheduled_downgrade_asks_first(shop: Shop) -> None:
    plan_changes.schedule_downgrade(shop.sub_id, "basic", "monthly", actor=ADMIN_EMAIL,
                                    settings=shop.runtime.settings, uow=shop.runtime.uow(),
                                    gateway=shop.runtime.gateway)
    shop.store()
    before = shop.watched()
    at = _open(shop, "Cancel the scheduled downgrade")
    assert "to basic: it stays on pro monthly at 30.00 USD per month" in _dialog_text(at)
    assert shop.watched() == before
    _confirm(at)
    after = shop.stripe()
    assert after["cancel_at_period_end"] is False and not (after.get("metadata") or {}).get("pending_plan")
    with shop.runtime.uow() as uow:
        entry = uow.session.execute(
            select(AuditLog).filter_by(action="plan.cancel_scheduled_downgrade", result="ok")).scalar_one()
        assert (entry.actor, entry.target) == (ADMIN_EMAIL, shop.sub_id)


def test_others_get_no_buttons_and_stripe_is_untouched(shop: Shop) -> None:
    before = shop.watched()
    for role in ("non_admin", "signed_out"):
        for at in (app_test_for("plan_changes", role), page_direct_test("plan_changes", role)):
            assert not [b for b in at.button if b.label.endswith("…")]
            assert shop.sub_id not in page_text(at)
    assert shop.watched() == before
