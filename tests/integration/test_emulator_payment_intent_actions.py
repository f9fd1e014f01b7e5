"""Contract tests through the real stripe SDK: PaymentIntent update, cancel and capture
(capture_method=manual, partial capture); refund update (metadata) and cancel."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_capture", base_addresses={"api": emulator.base_url}, max_network_retries=0)


def _customer(client: stripe.StripeClient) -> Any:
    return client.v1.customers.create({"email": "hold@example.com"})


def test_manual_capture_partial_and_its_balance_transaction(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    intent = client.v1.payment_intents.create({"amount": 5000, "currency": "usd", "customer": customer.id,
                                               "payment_method": "pm_card_visa", "confirm": True,
                                               "capture_method": "manual"})
    assert (intent.status, intent.capture_method, intent.amount_capturable, intent.amount_received) == (
        "requires_capture", "manual", 5000, 0)
    held = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (held.status, held.captured, held.amount_captured, held.balance_transaction) == ("succeeded", False, 0,
                                                                                            None)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.payment_intents.capture(intent.id, {"amount_to_capture": 6000})
    assert too_much.value.param == "amount_to_capture"

    captured = client.v1.payment_intents.capture(intent.id, {"amount_to_capture": 4000})
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 4000, 0)
    charge = client.v1.charges.retrieve(str(intent.latest_charge), {"expand": ["balance_transaction"]})
    assert (charge.captured, charge.amount_captured, charge.amount_refunded) == (True, 4000, 1000)
    txn = charge.balance_transaction
    assert isinstance(txn, stripe.BalanceTransaction)
    assert (txn.amount, txn.fee, txn.net) == (4000, 146, 3854)  # 2.9% of 4000 = 116, + 30
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.payment_intents.capture(intent.id)
    assert again.value.code == "payment_intent_unexpected_state"
    types = [e.type for e in client.v1.events.list({"limit": 20}).data]
    assert "charge.captured" in types and "payment_intent.amount_capturable_updated" in types


def test_cancel_and_update(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    held = client.v1.payment_intents.create({"amount": 3000, "currency": "usd", "customer": customer.id,
                                             "payment_method": "pm_card_visa", "confirm": True,
                                             "capture_method": "manual"})
    canceled = client.v1.payment_intents.cancel(held.id, {"cancellation_reason": "requested_by_customer"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "requested_by_customer")
    assert canceled.canceled_at is not None
    released = client.v1.charges.retrieve(str(held.latest_charge))
    assert (released.refunded, released.amount_refunded, released.captured) == (True, 3000, False)

    draft = client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "customer": customer.id})
    updated = client.v1.payment_intents.update(draft.id, {"amount": 1500, "metadata": {"order": "7"},
                                                          "description": "Order 7"})
    assert (updated.amount, updated.metadata.to_dict(), updated.description) == (1500, {"order": "7"}, "Order 7")
    with_card = client.v1.payment_intents.update(draft.id, {"payment_method": "pm_card_visa"})
    assert with_card.status == "requires_confirmation"
    paid = client.v1.payment_intents.confirm(draft.id)
    assert paid.status == "succeeded" and paid.amount_received == 1500
    with pytest.raises(stripe.InvalidRequestError) as late:
        client.v1.payment_intents.update(draft.id, {"amount": 2000})
    assert late.value.code == "payment_intent_unexpected_state"
    assert client.v1.payment_intents.update(draft.id, {"metadata": {"note": "ok"}}).metadata.note == "ok"
    with pytest.raises(stripe.InvalidRequestError) as not_cancelable:
        client.v1.payment_intents.cancel(draft.id)
    assert not_cancelable.value.code == "payment_intent_unexpected_state"
    assert "status of succeeded" in str(not_cancelable.value.user_message)


def test_refund_update_and_cancel(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    intent = client.v1.payment_intents.create({"amount": 2500, "currency": "usd", "customer": customer.id,
                                               "payment_method": "pm_card_visa", "confirm": True})
    refund = client.v1.refunds.create({"payment_intent": intent.id, "amount": 500})
    updated = client.v1.refunds.update(refund.id, {"metadata": {"ticket": "T-1"}})
    assert updated.metadata.to_dict() == {"ticket": "T-1"}
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.refunds.update(refund.id, {"reason": "duplicate"})  # type: ignore[typeddict-unknown-key]
    assert unknown.value.code == "parameter_unknown"
    # Only a refund in requires_action (payment methods needing customer action) can be canceled.
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.cancel(refund.id)
    assert client.v1.refunds.retrieve(refund.id).status == "succeeded"
