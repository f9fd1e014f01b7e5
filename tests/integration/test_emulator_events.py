"""Contract tests for the event stream, through the real stripe SDK's Events API: creation
order, `created` never in the future, previous_attributes holding exactly what changed (and
no event for a no-op update), and `request` filled the way Stripe fills it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from tests.integration.stripe_target import StripeTarget


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_events")


def _events(client: stripe.StripeClient, **params: Any) -> list[Any]:
    """All events, oldest first (the API lists newest first)."""
    listed = client.v1.events.list({"limit": 100, **params})  # type: ignore[typeddict-item]
    return list(reversed(listed.data))


def _types_for(events: list[Any], object_id: str) -> list[str]:
    return [e.type for e in events if e.data.object.to_dict().get("id") == object_id]


def test_subscription_and_invoice_events_come_in_creation_order(client: stripe.StripeClient) -> None:
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 2000, "product_data": {"name": "Pro"},
                                     "recurring": {"interval": "month"}})
    customer = client.v1.customers.create({"email": "order@example.io", "payment_method": "pm_card_visa"})
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    assert subscription.status == "active"
    events = _events(client)
    types = [e.type for e in events]
    sub_types = _types_for(events, subscription.id)
    assert sub_types[0] == "customer.subscription.created"
    assert sub_types.index("customer.subscription.created") < sub_types.index("customer.subscription.updated")
    invoice_id = subscription.latest_invoice
    invoice_types = _types_for(events, str(invoice_id))
    assert invoice_types[:2] == ["invoice.created", "invoice.finalized"]
    order = ["invoice.created", "invoice.finalized", "payment_intent.created", "charge.succeeded",
             "payment_intent.succeeded", "invoice_payment.paid", "invoice.paid"]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))
    assert all(e.created <= time.time() for e in events)


def test_dispute_and_efw_events_are_never_stamped_in_the_future(client: stripe.StripeClient) -> None:
    for token in ("pm_card_createDispute", "pm_card_createIssuerFraudRecord"):
        customer = client.v1.customers.create({"email": f"{token}@example.io"})
        client.v1.payment_intents.create({"amount": 1200, "currency": "usd", "customer": customer.id,
                                          "payment_method": token, "confirm": True})
    now = time.time()
    events = _events(client, types=["charge.dispute.created", "radar.early_fraud_warning.created"])
    assert {e.type for e in events} == {"charge.dispute.created", "radar.early_fraud_warning.created"}
    assert all(e.created <= now for e in events)
    assert all(e.data.object.created <= now for e in events)


def test_previous_attributes_hold_exactly_the_changed_fields(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "prev@example.io", "name": "Ada",
                                           "metadata": {"tier": "gold"}})
    client.v1.customers.update(customer.id, {"name": "Ada L.", "email": "prev@example.io"})
    client.v1.customers.update(customer.id, {"metadata": {"region": "eu"}})
    client.v1.customers.update(customer.id, {"name": "Ada L.", "metadata": {"tier": "gold"}})  # changes nothing
    updates = _events(client, type="customer.updated")
    assert len(updates) == 2, "a no-op update sends no event"
    assert updates[0].data.previous_attributes.to_dict() == {"name": "Ada"}
    assert updates[1].data.previous_attributes.to_dict() == {"metadata": {"region": None}}
    assert updates[1].data.object.metadata.to_dict() == {"tier": "gold", "region": "eu"}


def test_request_is_filled_for_api_requests_and_null_for_automatic_work(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "req@example.io"}, {"idempotency_key": "customer:req"})
    created = _events(client, type="customer.created")[-1]
    assert customer.last_response is not None
    assert created.request.id == customer.last_response.request_id
    assert created.request.idempotency_key == "customer:req"
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": 1_767_225_600})  # 2026-01-01 00:00 UTC
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 900, "product_data": {"name": "Basic"},
                                     "recurring": {"interval": "month"}})
    clocked = client.v1.customers.create({"email": "clock@example.io", "test_clock": clock.id,
                                          "payment_method": "pm_card_visa"})
    subscription = client.v1.subscriptions.create({"customer": clocked.id, "items": [{"price": price.id}]})
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": 1_767_225_600 + 40 * 86_400})
    renewals = [e for e in _events(client, type="invoice.created")
                if e.data.object.billing_reason == "subscription_cycle"
                and e.data.object.parent.subscription_details.subscription == subscription.id]
    assert renewals and all(e.request.id is None and e.request.idempotency_key is None for e in renewals)
