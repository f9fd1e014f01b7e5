"""The one reader of Stripe shapes: expandable ids, the subscription item (price expanded
or not, basil's period on the item) and the invoice's subscription under `parent`."""

from __future__ import annotations

from typing import Any

from services.stripe_objects import (
    first_item,
    invoice_subscription_id,
    item_id,
    item_price,
    item_price_id,
    object_id,
    subscription_items,
    subscription_period,
)

BASIL_SUBSCRIPTION = {
    "id": "sub_1",
    "current_period_end": 1,  # a pre-basil field: never read
    "items": {"object": "list", "data": [{
        "id": "si_1", "current_period_start": 1_700_000_000, "current_period_end": 1_702_592_000,
        "price": {"id": "price_pro_monthly", "unit_amount": 4900, "currency": "usd"},
    }]},
}


def test_expandable_fields_are_an_id_or_an_object() -> None:
    assert object_id("cus_1") == "cus_1"
    assert object_id({"id": "cus_1", "object": "customer"}) == "cus_1"
    assert object_id(None) is None and object_id({"object": "customer"}) is None


def test_the_subscription_item_its_price_and_basil_period() -> None:
    assert item_id(BASIL_SUBSCRIPTION) == "si_1"
    assert item_price_id(BASIL_SUBSCRIPTION) == "price_pro_monthly"
    assert item_price(BASIL_SUBSCRIPTION)["unit_amount"] == 4900
    assert subscription_period(BASIL_SUBSCRIPTION) == (1_700_000_000, 1_702_592_000)
    unexpanded = {"items": {"data": [{"id": "si_2", "price": "price_basic_monthly"}]}}
    assert item_price_id(unexpanded) == "price_basic_monthly" and item_price(unexpanded) == {}


def test_a_subscription_without_items_reads_as_nothing() -> None:
    shapes: list[dict[str, Any]] = [{}, {"items": None}, {"items": {"data": []}}]
    for empty in shapes:
        assert subscription_items(empty) == [] and first_item(empty) is None
        assert item_id(empty) is None and item_price_id(empty) is None
        assert subscription_period(empty) == (None, None)


def test_an_invoice_names_its_subscription_under_parent() -> None:
    invoice = {"parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}}}
    assert invoice_subscription_id(invoice) == "sub_1"
    assert invoice_subscription_id({"parent": None, "subscription": "sub_old"}) is None
