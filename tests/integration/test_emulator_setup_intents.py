"""Contract tests through the real stripe SDK: setup intents (create, retrieve, update, confirm,
cancel, list; authentication on setup; declines as 402 carrying the SetupIntent) and a customer's
payment methods (/v1/customers/{id}/payment_methods)."""

from __future__ import annotations

import pytest
import stripe

from tests.conftest import EmulatorHandle


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_setup", base_addresses={"api": emulator.base_url}, max_network_retries=0)


def test_setup_intent_lifecycle_and_customer_payment_methods(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "setup@example.com"})
    intent = client.v1.setup_intents.create({"customer": customer.id, "metadata": {"k": "v"}})
    assert (intent.object, intent.status, intent.usage, intent.payment_method_types) == (
        "setup_intent", "requires_payment_method", "off_session", ["card"])
    assert intent.id.startswith("seti_") and intent.client_secret.startswith(f"{intent.id}_secret_")
    updated = client.v1.setup_intents.update(intent.id, {"payment_method": "pm_card_visa",
                                                         "metadata": {"k2": "v2"}})
    assert updated.status == "requires_confirmation" and updated.metadata.to_dict() == {"k": "v", "k2": "v2"}
    confirmed = client.v1.setup_intents.confirm(intent.id)
    assert confirmed.status == "succeeded" and confirmed.next_action is None
    assert client.v1.setup_intents.retrieve(intent.id).status == "succeeded"

    methods = client.v1.customers.payment_methods.list(customer.id, {"type": "card"})
    assert [pm.id for pm in methods.data] == [confirmed.payment_method]
    assert methods.url == f"/v1/customers/{customer.id}/payment_methods"
    assert client.v1.customers.payment_methods.list(customer.id, {"type": "us_bank_account"}).data == []
    one = client.v1.customers.payment_methods.retrieve(customer.id, str(confirmed.payment_method))
    assert one.card is not None and one.card.last4 == "4242" and one.customer == customer.id

    with pytest.raises(stripe.InvalidRequestError) as not_cancelable:
        client.v1.setup_intents.cancel(intent.id)
    assert not_cancelable.value.code == "setup_intent_unexpected_state"

    other = client.v1.setup_intents.create({"customer": customer.id, "allowed_payment_method_types": ["card"]})
    assert (other.allowed_payment_method_types, other.payment_method_types) == (["card"], ["card"])
    canceled = client.v1.setup_intents.cancel(other.id, {"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    listed = client.v1.setup_intents.list({"customer": customer.id})
    assert {i.id for i in listed.data} == {intent.id, other.id}


@pytest.mark.emulator_only(reason="plays the customer's 3-D Secure step through "
                                   "/_emulator/setup_intents/{id}/authenticate (a browser step on real Stripe)")
def test_authentication_required_on_setup_then_off_session_payment(emulator: EmulatorHandle,
                                                                   client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "sca@example.com"})
    intent = client.v1.setup_intents.create({"customer": customer.id, "confirm": True,
                                             "payment_method": "pm_card_authenticationRequiredOnSetup"})
    assert intent.status == "requires_action" and intent.next_action is not None
    assert intent.next_action.type == "use_stripe_sdk"
    assert client.v1.customers.payment_methods.list(customer.id).data == []  # attached only on success
    emulator.admin(f"setup_intents/{intent.id}/authenticate")  # the customer's 3-D Secure step
    done = client.v1.setup_intents.retrieve(intent.id)
    assert done.status == "succeeded"
    # Once set up, the card pays off-session without another challenge (Stripe's 4000002500003155).
    payment = client.v1.payment_intents.create({"amount": 1500, "currency": "usd", "customer": customer.id,
                                                "payment_method": str(done.payment_method), "confirm": True,
                                                "off_session": True})
    assert payment.status == "succeeded"


def test_declined_card_on_setup_is_a_402_carrying_the_setup_intent(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "declined@example.com"})
    intent = client.v1.setup_intents.create({"customer": customer.id})
    with pytest.raises(stripe.CardError) as declined:
        client.v1.setup_intents.confirm(intent.id, {"payment_method": "pm_card_chargeDeclined"})
    assert declined.value.http_status == 402 and declined.value.code == "card_declined"
    error = declined.value.error
    assert error is not None and error.setup_intent is not None and error.setup_intent.id == intent.id
    after = client.v1.setup_intents.retrieve(intent.id)
    assert after.status == "requires_payment_method"
    assert after.last_setup_error is not None and after.last_setup_error.code == "card_declined"
