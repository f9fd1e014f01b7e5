"""Pure rules of plan changes: price resolution, direction, proration lines."""

from __future__ import annotations

import pytest

from services.plan_change_queries import plan_choices
from services.plan_changes import (
    PlanChangeError,
    monthly_amount,
    resolve_price,
)
from services.plan_preview import line_is_proration
from services.stripe_objects import item_price_id
from tests.integration.reconcile_fixtures import price_object, settings_for, subscription

SETTINGS = settings_for("sqlite://")


def test_prices_come_from_the_mapping_case_insensitively() -> None:
    assert resolve_price(SETTINGS, "Pro", " MONTHLY ") == "price_pro_monthly"
    assert plan_choices(SETTINGS) == {"basic": ["monthly", "yearly"], "pro": ["monthly", "yearly"]}


@pytest.mark.parametrize(("plan", "interval"), [("enterprise", "monthly"), ("pro", "weekly"), ("", "monthly")])
def test_unknown_plan_or_interval_is_a_clear_error(plan: str, interval: str) -> None:
    with pytest.raises(PlanChangeError) as raised:
        resolve_price(SETTINGS, plan, interval)
    assert "Unknown plan or interval" in raised.value.message and "basic monthly" in raised.value.message


def test_monthly_amount_compares_across_intervals() -> None:
    assert monthly_amount(price_object("price_pro_yearly")) == 2500  # 300.00 a year
    assert monthly_amount(price_object("price_pro_monthly")) == 3000
    assert monthly_amount(price_object("price_basic_yearly")) < monthly_amount(price_object("price_basic_monthly"))


def test_item_price_and_proration_flags_in_basil_and_older_shapes() -> None:
    assert item_price_id(subscription("sub_1", price="price_basic_monthly")) == "price_basic_monthly"
    assert item_price_id({"items": {"data": []}}) is None
    assert line_is_proration({"parent": {"subscription_item_details": {"proration": True}}})
    assert not line_is_proration({"parent": {"subscription_item_details": {"proration": False}}})
    assert line_is_proration({"proration": True})
