"""More contract tests with the real stripe SDK: webhook endpoints, test clocks, invoices,
payment intents and the QA misbehaviour switches."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle
from tests.integration.stripe_target import StripeTarget, empty_account


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_objects", files=True)


@pytest.fixture
def price(client: stripe.StripeClient, stripe_target: StripeTarget) -> Any:
    # Lookup keys are unique per Stripe account: on a real one a rerun's price goes without it.
    lookup: Any = {"lookup_key": "pro_monthly"} if stripe_target.is_emulator else {}
    return client.v1.prices.create({"currency": "usd", "unit_amount": 2900, "product_data": {"name": "Pro"},
                                    "recurring": {"interval": "month"}, **lookup})


@pytest.mark.emulator_only(reason=empty_account("webhook endpoints"))
def test_webhook_endpoint_crud_secret_only_on_create(client: stripe.StripeClient) -> None:
    created = client.v1.webhook_endpoints.create({"url": "http://127.0.0.1:9/hook",
                                                  "enabled_events": ["invoice.paid", "charge.refunded"]})
    assert created.object == "webhook_endpoint" and created.secret.startswith("whsec_")
    assert created.status == "enabled"
    fetched = client.v1.webhook_endpoints.retrieve(created.id)
    assert "secret" not in fetched.to_dict()
    updated = client.v1.webhook_endpoints.update(created.id, {"disabled": True, "enabled_events": ["*"]})
    assert updated.status == "disabled" and updated.enabled_events == ["*"]
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [created.id]
    assert client.v1.webhook_endpoints.delete(created.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.webhook_endpoints.retrieve(created.id)
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_test_clock_crud_and_ready_event(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": 1_800_000_000, "name": "qa"})
    assert clock.object == "test_helpers.test_clock" and clock.status == "ready"
    advanced = client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": 1_800_086_400})
    assert advanced.frozen_time == 1_800_086_400
    assert client.v1.test_helpers.test_clocks.retrieve(clock.id).status == "ready"
    assert clock.id in [c.id for c in client.v1.test_helpers.test_clocks.list().data]
    types = {e.type for e in client.v1.events.list({"limit": 100}).data}
    assert "test_helpers.test_clock.ready" in types
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": 1_700_000_000})  # backwards
    assert client.v1.test_helpers.test_clocks.delete(clock.id).deleted is True


@pytest.mark.emulator_only(reason=empty_account("invoice.voided events"))
def test_open_invoice_void_and_refinalize_refused(client: stripe.StripeClient, price: Any) -> None:
    customer = client.v1.customers.create({"email": "inv@example.io", "payment_method": "pm_card_chargeCustomerFail",
                                           "invoice_settings": {"default_payment_method":
                                                                "pm_card_chargeCustomerFail"}})
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    assert invoice.status == "open" and invoice.attempt_count == 1 and invoice.amount_paid == 0
    assert invoice.parent.subscription_details.subscription == subscription.id
    with pytest.raises(stripe.InvalidRequestError) as refinalize:
        client.v1.invoices.finalize_invoice(invoice.id)
    assert refinalize.value.http_status == 400
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(invoice.id)
    voided = client.v1.invoices.void_invoice(invoice.id)
    assert voided.status == "void" and voided.status_transitions.voided_at is not None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(invoice.id)
    assert [e.data.object.id for e in client.v1.events.list({"type": "invoice.voided"}).data] == [invoice.id]


def test_payment_intent_declined_card_is_a_402_card_error(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "pi@example.io"})
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create({"amount": 500, "currency": "usd", "customer": customer.id,
                                          "payment_method": "pm_card_chargeDeclined", "confirm": True})
    assert declined.value.http_status == 402 and declined.value.code == "card_declined"
    intent = client.v1.payment_intents.create({"amount": 500, "currency": "usd", "customer": customer.id,
                                               "payment_method": "pm_card_visa"})
    assert intent.status == "requires_confirmation"
    confirmed = client.v1.payment_intents.confirm(intent.id)
    assert confirmed.status == "succeeded" and confirmed.latest_charge.startswith("ch_")


@pytest.mark.emulator_only(reason="makes the emulator misbehave through /_emulator/misbehave")
def test_misbehave_suppress_events_and_downgrade_cancels(client: stripe.StripeClient, emulator: EmulatorHandle,
                                                         price: Any) -> None:
    emulator.admin("misbehave", {"suppress_events": ["customer.created"], "downgrade_cancels": True})
    assert emulator.admin("misbehave", method="GET")["downgrade_cancels"] is True
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": 1_800_000_000})
    customer = client.v1.customers.create({"test_clock": clock.id, "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    assert client.v1.events.list({"type": "customer.created"}).data == []
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    end = sub["items"].data[0].current_period_end
    client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": False})
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 3600})
    # Wrong on purpose: the reset of cancel_at_period_end is ignored, for QA negative tests.
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_one_off_invoice_draft_item_finalize_pay(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "one@example.io", "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    invoice = client.v1.invoices.create({"customer": customer.id, "auto_advance": False})
    assert invoice.status == "draft" and invoice.parent is None and invoice.billing_reason == "manual"
    # Every field Stripe defines is there, null where Stripe sends null (the SDK raised AttributeError before).
    assert invoice.due_date is None and invoice.issuer.type == "self" and invoice.automatic_tax.enabled is False
    item = client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": 1234,
                                           "currency": "usd", "description": "Setup"})
    assert item.object == "invoiceitem" and item.invoice == invoice.id
    draft = client.v1.invoices.retrieve(invoice.id)
    assert draft.amount_due == 1234 and draft.lines.data[0].parent.invoice_item_details.invoice_item == item.id
    assert client.v1.invoices.finalize_invoice(invoice.id).status == "open"
    paid = client.v1.invoices.pay(invoice.id)
    assert paid.status == "paid" and paid.amount_paid == 1234 and paid.amount_remaining == 0
    with pytest.raises(stripe.InvalidRequestError) as missing_param:
        client.v1.invoices.create({})
    assert missing_param.value.code == "parameter_missing"
    assert [i.id for i in client.v1.invoices.list({"customer": customer.id}).data] == [invoice.id]
