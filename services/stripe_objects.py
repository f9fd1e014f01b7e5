"""Reading Stripe objects: the one parser per shape that several services need.

Pure functions over the dicts the gateway returns (API 2025-03-31.basil and later):
expandable fields, a subscription's items (its price and, since basil, its billing
period), an invoice's subscription and PaymentIntent. Turning objects into billing-DB rows is
services/stripe_mapping.py; this module only reads.
"""

from __future__ import annotations

from typing import Any


def object_id(value: Any) -> str | None:
    """An expandable field is either an id string or the expanded object."""
    if value is None:
        return None
    if isinstance(value, dict):
        return str(value.get("id")) if value.get("id") else None
    return str(value)


def subscription_items(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    """`subscription.items.data` (a list object), empty when absent."""
    return list((subscription.get("items") or {}).get("data") or [])


def first_item(subscription: dict[str, Any]) -> dict[str, Any] | None:
    """The console's subscriptions have one item (one plan); None when there is none."""
    items = subscription_items(subscription)
    return items[0] if items else None


def item_id(subscription: dict[str, Any]) -> str | None:
    item = first_item(subscription)
    return str(item["id"]) if item and item.get("id") else None


def item_price(subscription: dict[str, Any]) -> dict[str, Any]:
    """The item's price object ({} when absent or not expanded)."""
    item = first_item(subscription) or {}
    price = item.get("price")
    return price if isinstance(price, dict) else {}


def item_price_id(subscription: dict[str, Any]) -> str | None:
    item = first_item(subscription) or {}
    return object_id(item.get("price"))


def subscription_period(subscription: dict[str, Any]) -> tuple[int | None, int | None]:
    """Basil (2025-03-31) moved the billing period from the subscription onto its items."""
    item = first_item(subscription)
    if item is None:
        return None, None
    return item.get("current_period_start"), item.get("current_period_end")


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    """Basil: an invoice's subscription is under parent.subscription_details."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return object_id(details.get("subscription"))


def invoice_payment_intent(invoice: dict[str, Any]) -> str | None:
    """Basil: an invoice's PaymentIntent is under `payments.data[].payment.payment_intent`; the
    pre-basil top-level `payment_intent` is read only when no payment names one."""
    for payment in (invoice.get("payments") or {}).get("data") or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent:
            return object_id(intent)
    return object_id(invoice.get("payment_intent"))
