"""The Go-live page's live smoke test per role, against the emulator: an admin creates the Checkout
Session (URL and QR code shown), the emulator completes it, the page runs the checks once the event
is processed, and the confirmed refund-and-cancel finishes the run; others never see it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import select

from db.models import ChecklistItem
from services import smoke_test
from tests.conftest import app_test_for, assert_page_hides, page_text
from tests.integration.test_smoke_test import deliver_events


@pytest.fixture
def smoke_page_runtime(emulator: Any, runtime_factory: Any) -> Iterator[Any]:
    prices = emulator.admin("seed", {"customers": 0})["prices"]
    rt = runtime_factory(STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(prices),
                         STRIPE_SMOKE_TEST_PRICE=prices["basic"]["monthly"])
    st.cache_data.clear()
    yield rt
    st.cache_data.clear()


def _button(at: Any, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


@pytest.mark.parametrize("role", ["signed_out", "non_admin"])
def test_others_never_see_the_smoke_test(smoke_page_runtime: Any, role: str) -> None:
    assert_page_hides("golive", role, words=["Live smoke test"], buttons=["Create smoke-test Checkout Session"])
    assert smoke_test.latest(smoke_page_runtime.uow()) is None


def test_admin_runs_the_smoke_test_from_the_page(smoke_page_runtime: Any, emulator: Any) -> None:
    rt = smoke_page_runtime
    at = app_test_for("golive", "admin", timeout=60)
    assert not at.exception
    assert "Live smoke test" in page_text(at) and "per month" in page_text(at)
    _button(at, "Create smoke-test Checkout Session").click()
    at.run()
    assert not at.exception
    run = smoke_test.latest(rt.uow())
    assert run is not None and run["status"] == "open"
    text = page_text(at)
    assert "waiting for the payment" in text and any(run["checkout_url"] == c.value for c in at.code)
    assert len(at.get("image")) >= 1  # the QR code

    emulator.admin(f"checkout/sessions/{run['checkout_session_id']}/complete", {"payment_method": "pm_card_visa"})
    deliver_events(rt)
    at.run()  # the watcher sees the event, runs the checks and redraws
    assert not at.exception
    text = page_text(at)
    assert "checks passed" in text
    steps = next(df.value for df in at.dataframe if "step" in df.value.columns)
    assert list(steps["result"]) == ["PASS"] * 5 + ["waiting"] * 2
    _button(at, "Refund and cancel…").click()
    at.run()
    assert "Refund and cancel the smoke test?" in page_text(at) or _button(at, "Refund and cancel now")
    _button(at, "Refund and cancel now").click()
    at.run()
    assert not at.exception
    assert "PASSED" in page_text(at)
    steps = next(df.value for df in at.dataframe if "step" in df.value.columns)
    assert list(steps["result"]) == ["PASS"] * 7 and steps["detail"].str.contains("9.00 USD").any()
    with rt.uow() as uow:
        item = uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == "live_test_charge")).scalar_one()
        assert item.status == "done"


def test_page_says_what_to_set_without_a_price(emulator: Any, runtime_factory: Any) -> None:
    emulator.admin("seed", {"customers": 0})
    runtime_factory()
    st.cache_data.clear()
    at = app_test_for("golive", "admin", timeout=60)
    assert not at.exception
    assert "set STRIPE_SMOKE_TEST_PRICE" in page_text(at)
    assert _button(at, "Create smoke-test Checkout Session").disabled
