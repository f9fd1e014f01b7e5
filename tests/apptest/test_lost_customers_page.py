"""The Reconciliation page's Lost customers section (emulator, test clock): the row says who was
lost, when and the monthly revenue lost; the only offered fix is re-subscribing on the pending
plan, confirmed in a dialog before anything reaches Stripe; the old downgrade fix is not offered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import streamlit as st

from tests.conftest import app_test_for, page_direct_test, page_text
from tests.integration.test_reconciliation_emulator import World


@pytest.fixture
def lost_world(emulator: Any, runtime_factory: Callable[..., Any]) -> tuple[World, str]:
    world = World(runtime_factory)
    sub_id, end = world.lose_customer("Lin **Lost**")
    world.reconcile(now=end + 3600)
    st.cache_data.clear()
    return world, sub_id


def _customer_subscriptions(world: World) -> list[dict[str, Any]]:
    return [s for s in world.gateway.list_subscriptions(status="all") if s["customer"] == world.customer["id"]]


def test_lost_customer_row_and_its_working_fix(lost_world: tuple[World, str]) -> None:
    world, sub_id = lost_world
    at = app_test_for("reconciliation", "admin")
    assert not at.exception
    table = next(df.value for df in at.dataframe if "monthly revenue lost" in df.value.columns)
    row = table.iloc[0]
    assert (row["customer"], row["email"], row["subscription"]) == ("Lin **Lost**", world.customer["email"], sub_id)
    assert row["monthly revenue lost"] == "10.00 USD / month" and row["ended"].endswith("UTC")
    assert "customer lost: downgrade not applied before period end" in page_text(at)
    assert not [b for b in at.selectbox if b.label == "Finding to fix"]  # no fix that cannot work
    assert "pending_plan is still set after its period ended" not in page_text(at)

    next(b for b in at.button if b.label == "Re-subscribe on the pending plan…").click()
    at.run()
    dialog = "\n".join(str(t.value) for t in at.text)
    assert f"Customer: Lin **Lost** <{world.customer['email']}> ({world.customer['id']})" in dialog
    assert "new subscription on basic monthly at 10.00 USD / month" in dialog
    assert "Stripe **test** mode" in page_text(at)
    assert len(_customer_subscriptions(world)) == 1  # one click: nothing created yet
    next(b for b in at.button if b.label == "Re-subscribe").click()
    at.run()
    assert not at.exception
    subs = _customer_subscriptions(world)
    [new] = [s for s in subs if s["id"] != sub_id]
    assert new["status"] == "active" and new["items"]["data"][0]["price"]["id"] == world.prices["basic"]
    assert f"Re-subscribed: {new['id']} on basic" in page_text(at)
    assert "No lost customers in the latest run." in page_text(at)


def test_others_see_no_lost_customers(lost_world: tuple[World, str]) -> None:
    world, sub_id = lost_world
    for role in ("non_admin", "signed_out"):
        for at in (app_test_for("reconciliation", role), page_direct_test("reconciliation", role)):
            assert world.customer["email"] not in page_text(at) and sub_id not in page_text(at)
            assert not [b for b in at.button if b.label.startswith("Re-subscribe")]
    assert len(_customer_subscriptions(world)) == 1


def test_mark_handled_needs_a_reason_and_hides_the_row(lost_world: tuple[World, str]) -> None:
    world, sub_id = lost_world
    at = app_test_for("reconciliation", "admin")
    next(b for b in at.button if b.label == "Mark handled").click()
    at.run()
    assert "Write how this lost customer was handled (10+ characters)." in page_text(at)
    next(t for t in at.text_input if t.label.startswith("How was it handled?")).input(
        "Called them: moved to invoicing")
    next(b for b in at.button if b.label == "Mark handled").click()
    at.run()
    assert not at.exception
    assert "No lost customers in the latest run." in page_text(at)
    next(t for t in at.toggle if t.label == "Show re-subscribed and handled").set_value(True)
    at.run()
    table = next(df.value for df in at.dataframe if "monthly revenue lost" in df.value.columns)
    assert table.iloc[0]["decision"] == "handled by admin@example.com: Called them: moved to invoicing"
    assert len(_customer_subscriptions(world)) == 1  # handled: nothing sent to Stripe
