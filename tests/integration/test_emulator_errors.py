"""Contract tests for Stripe's errors and protocol, through the real stripe SDK: 402 card
errors carrying the PaymentIntent and PaymentMethod, parameter_unknown for nested and query
params, expand paths, and the idempotency rules (nothing saved for a request that failed
validation; Original-Request names the first request)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.integration.stripe_target import FIXED_IDEMPOTENCY_KEYS, StripeTarget


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_errors")


@pytest.fixture
def price(client: stripe.StripeClient) -> Any:
    return client.v1.prices.create({"currency": "usd", "unit_amount": 1500, "product_data": {"name": "Team"},
                                    "recurring": {"interval": "month"}})


def test_declined_confirm_is_a_402_card_error_carrying_the_intent_and_method(client: stripe.StripeClient) -> None:
    # 4000000000000341 attaches, then every charge on it is declined.
    customer = client.v1.customers.create({"email": "decline@example.io",
                                           "payment_method": "pm_card_chargeCustomerFail"})
    intent = client.v1.payment_intents.create({"amount": 900, "currency": "usd", "customer": customer.id,
                                               "payment_method": customer.invoice_settings.default_payment_method})
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.confirm(intent.id)
    error = declined.value.error
    assert declined.value.http_status == 402 and error is not None and error.type == "card_error"
    assert error.code == "card_declined" and error.decline_code
    assert error.payment_intent is not None and error.payment_intent.id == intent.id
    assert error.payment_intent.status == "requires_payment_method"
    assert error.payment_method is not None and error.payment_method.id == intent.payment_method
    assert error.charge == error.payment_intent.latest_charge
    # The intent itself kept the failure, as Stripe's does.
    again = client.v1.payment_intents.retrieve(intent.id)
    assert again.last_payment_error is not None and again.last_payment_error.code == "card_declined"


def test_subscription_create_with_a_declining_card(client: stripe.StripeClient, price: Any) -> None:
    customer = client.v1.customers.create({"email": "sub-decline@example.io",
                                           "payment_method": "pm_card_chargeCustomerFail"})
    # Default payment_behavior (allow_incomplete): created, incomplete.
    incomplete = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    assert incomplete.status == "incomplete"
    # error_if_incomplete: a 402 with the first invoice's PaymentIntent, and no subscription.
    with pytest.raises(stripe.CardError) as declined:
        client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                        "payment_behavior": "error_if_incomplete"})
    error = declined.value.error
    assert error is not None and error.payment_intent is not None and error.payment_intent.id.startswith("pi_")
    assert error.payment_method is not None
    listed = client.v1.subscriptions.list({"customer": customer.id, "status": "all"}).data
    assert [s.id for s in listed] == [incomplete.id]


def test_default_incomplete_waits_for_the_intent_to_be_confirmed(client: stripe.StripeClient, price: Any) -> None:
    customer = client.v1.customers.create({"email": "default-incomplete@example.io"})
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                                   "payment_behavior": "default_incomplete",
                                                   "expand": ["latest_invoice.payments"]})
    assert subscription.status == "incomplete"
    invoice = subscription.latest_invoice
    assert invoice.status == "open" and invoice.attempt_count == 0
    intent_id = invoice.payments.data[0].payment.payment_intent
    intent = client.v1.payment_intents.retrieve(intent_id)
    assert intent.status == "requires_payment_method"
    assert client.v1.payment_intents.confirm(intent_id, {"payment_method": "pm_card_visa"}).status == "succeeded"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"


def test_invoice_pay_declined_is_a_402_with_the_intent(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "pay-decline@example.io",
                                           "payment_method": "pm_card_chargeCustomerFail"})
    invoice = client.v1.invoices.create({"customer": customer.id})
    client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": 700,
                                    "currency": "usd"})
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.CardError) as declined:
        client.v1.invoices.pay(invoice.id)
    error = declined.value.error
    assert error is not None and error.payment_intent is not None and error.payment_method is not None
    assert client.v1.invoices.retrieve(invoice.id).status == "open"


def test_unknown_nested_and_query_params_are_named(client: stripe.StripeClient, price: Any) -> None:
    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.v1.customers.create({"invoice_settings": {"default_payment_metod": "pm_card_visa"}})  # type: ignore[typeddict-unknown-key]
    assert nested.value.code == "parameter_unknown" and nested.value.param == "invoice_settings[default_payment_metod]"
    assert "Received unknown parameter: invoice_settings[default_payment_metod]" in str(nested.value)
    customer = client.v1.customers.create({"email": "params@example.io"})
    with pytest.raises(stripe.InvalidRequestError) as in_array:
        client.v1.subscriptions.create({"customer": customer.id,
                                        "items": [{"price": price.id, "quantiy": 2}]})  # type: ignore[typeddict-unknown-key]
    assert in_array.value.param == "items[0][quantiy]"
    with pytest.raises(stripe.InvalidRequestError) as query:
        client.v1.customers.list({"emial": "params@example.io"})  # type: ignore[typeddict-unknown-key]
    assert query.value.code == "parameter_unknown" and query.value.param == "emial"


def test_expanding_a_field_stripe_cannot_expand_is_a_400(client: stripe.StripeClient, price: Any) -> None:
    customer = client.v1.customers.create({"email": "expand@example.io", "payment_method": "pm_card_visa"})
    for path in ("email", "invoice_settings", "no_such_field"):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.customers.retrieve(customer.id, {"expand": [path]})
        assert refused.value.http_status == 400
        assert f"This property cannot be expanded ({path})." in str(refused.value)
    with pytest.raises(stripe.InvalidRequestError) as list_hint:
        client.v1.customers.list({"expand": ["test_clock"]})
    assert "data.test_clock" in str(list_hint.value)
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                                   "expand": ["items.data.price.product", "customer"]})
    assert subscription.customer.id == customer.id
    assert subscription["items"].data[0].price.product.name == "Team"


@pytest.mark.emulator_only(reason=FIXED_IDEMPOTENCY_KEYS)
def test_no_idempotent_result_is_saved_for_a_request_that_failed_validation(client: stripe.StripeClient) -> None:
    key = "create-customer-once"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create({"email": "idem@example.io", "nmae": "typo"},  # type: ignore[typeddict-unknown-key]
                                   {"idempotency_key": key})
    first = client.v1.customers.create({"email": "idem@example.io", "name": "Fixed"}, {"idempotency_key": key})
    assert first.name == "Fixed"
    replay = client.v1.customers.create({"email": "idem@example.io", "name": "Fixed"}, {"idempotency_key": key})
    assert replay.id == first.id
    assert first.last_response is not None and replay.last_response is not None
    headers = {k.lower(): v for k, v in replay.last_response.headers.items()}
    assert headers["idempotent-replayed"] == "true"
    assert headers["original-request"] == first.last_response.request_id != replay.last_response.request_id
    # A declined payment did begin executing: its 402 is saved and replayed.
    customer = client.v1.customers.create({"payment_method": "pm_card_chargeCustomerFail"})
    params: Any = {"amount": 800, "currency": "usd", "customer": customer.id, "confirm": True,
                   "payment_method": customer.invoice_settings.default_payment_method}
    with pytest.raises(stripe.CardError) as once:
        client.v1.payment_intents.create(params, {"idempotency_key": "pay-once"})
    with pytest.raises(stripe.CardError) as twice:
        client.v1.payment_intents.create(params, {"idempotency_key": "pay-once"})
    assert once.value.error is not None and twice.value.error is not None
    assert once.value.error.payment_intent.id == twice.value.error.payment_intent.id  # type: ignore[union-attr]
    assert len(client.v1.payment_intents.list({"customer": customer.id}).data) == 1
