"""Contract tests through the real stripe SDK: subscription items create/retrieve/update/delete/list,
with proration_behavior create_prorations (pending lines), always_invoice (invoiced at once) and none."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_items", base_addresses={"api": emulator.base_url}, max_network_retries=0)


def _price(client: stripe.StripeClient, amount: int, name: str) -> Any:
    return client.v1.prices.create({"currency": "usd", "unit_amount": amount, "product_data": {"name": name},
                                    "recurring": {"interval": "month"}})


def _subscription(client: stripe.StripeClient, price: Any) -> Any:
    customer = client.v1.customers.create({"email": "s@example.io", "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    return client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})


def _is_proration(line: Any) -> bool:
    return bool(((line.to_dict().get("parent") or {}).get("subscription_item_details") or {}).get("proration"))


def test_items_crud_and_list(client: stripe.StripeClient) -> None:
    base, seats = _price(client, 2000, "Base"), _price(client, 500, "Seat")
    subscription = _subscription(client, base)
    added = client.v1.subscription_items.create({"subscription": subscription.id, "price": seats.id, "quantity": 3,
                                                 "proration_behavior": "none", "metadata": {"kind": "seats"}})
    assert (added.object, added.quantity, added.subscription, added.metadata["kind"]) == (
        "subscription_item", 3, subscription.id, "seats")
    first = subscription["items"].data[0]
    assert added.current_period_end == first.current_period_end
    listed = client.v1.subscription_items.list({"subscription": subscription.id})
    assert [i.id for i in listed.data] == [first.id, added.id]
    assert client.v1.subscription_items.retrieve(added.id).price.id == seats.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_items.create({"subscription": subscription.id, "price": seats.id})

    updated = client.v1.subscription_items.update(added.id, {"quantity": 5, "proration_behavior": "none"})
    assert updated.quantity == 5
    assert [i.quantity for i in client.v1.subscriptions.retrieve(subscription.id)["items"].data] == [1, 5]

    assert client.v1.subscription_items.delete(added.id, {"proration_behavior": "none"}).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.subscription_items.retrieve(added.id)
    assert gone.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as last:
        client.v1.subscription_items.delete(first.id)
    assert "at least one" in str(last.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as needs:
        client.v1.subscription_items.list({})  # type: ignore[typeddict-item]
    assert needs.value.param == "subscription"
    updates = [e for e in client.v1.events.list({"type": "customer.subscription.updated"}).data
               if e.data.object.id == subscription.id]
    # Creating, updating and deleting the item: three updates naming the items (the first payment's
    # incomplete -> active update names only the status).
    assert len([e for e in updates if "items" in (e.data.previous_attributes or {})]) == 3


def test_always_invoice_charges_and_create_prorations_pends(client: stripe.StripeClient) -> None:
    base, seats = _price(client, 2000, "Base"), _price(client, 500, "Seat")
    subscription = _subscription(client, base)
    added = client.v1.subscription_items.create({"subscription": subscription.id, "price": seats.id, "quantity": 2,
                                                 "proration_behavior": "always_invoice"})
    latest = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(subscription.id).latest_invoice))
    assert latest.billing_reason == "subscription_update" and latest.status == "paid"
    assert len(latest.lines.data) == 1 and _is_proration(latest.lines.data[0])
    # Added just now: almost the whole period remains, so almost the whole 2 × 500.
    assert 990 <= latest.total <= 1000

    before = latest.id
    client.v1.subscription_items.update(added.id, {"quantity": 1})  # create_prorations: nothing invoiced now
    assert client.v1.subscriptions.retrieve(subscription.id).latest_invoice == before
    preview = client.v1.invoices.create_preview({"subscription": subscription.id})
    prorations = [line for line in preview.lines.data if _is_proration(line)]
    assert sorted(line.amount for line in prorations)[0] < 0  # the credit for the unused second seat
