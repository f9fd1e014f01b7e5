"""Contract tests for Stripe's documented test cards, through the real stripe SDK: every
decline reason, the cards by brand, authentication, Radar, disputes, EFWs and asynchronous
refunds, each by its `pm_card_*` PaymentMethod."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle
from tests.integration.stripe_target import StripeTarget, empty_account

DECLINES = [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ("pm_card_visa_chargeDeclinedVelocityLimitExceeded", "card_declined", "card_velocity_exceeded"),
]
BRANDS = [
    ("pm_card_visa", "visa", "credit", "4242"), ("pm_card_visa_debit", "visa", "debit", "5556"),
    ("pm_card_mastercard", "mastercard", "credit", "4444"), ("pm_card_mastercard_debit", "mastercard", "debit", "8210"),
    ("pm_card_mastercard_prepaid", "mastercard", "prepaid", "5100"), ("pm_card_amex", "amex", "credit", "0005"),
    ("pm_card_discover", "discover", "credit", "1117"), ("pm_card_diners", "diners", "credit", "0004"),
    ("pm_card_jcb", "jcb", "credit", "0505"), ("pm_card_unionpay", "unionpay", "credit", "0005"),
    ("pm_card_threeDSecureOptional", "visa", "credit", "3055"),
]


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_cards")


def _pay(client: stripe.StripeClient, token: str, **extra: Any) -> Any:
    params: Any = {"amount": 2500, "currency": "usd", "payment_method": token, "confirm": True, **extra}
    return client.v1.payment_intents.create(params)


def _wait_for(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


@pytest.mark.parametrize(("token", "code", "decline_code"), DECLINES)
def test_declines_by_reason(client: stripe.StripeClient, token: str, code: str, decline_code: str) -> None:
    with pytest.raises(stripe.CardError) as declined:
        _pay(client, token)
    error = declined.value.error
    assert error is not None and (error.code, error.decline_code) == (code, decline_code)
    assert error.payment_intent is not None and error.payment_intent.status == "requires_payment_method"
    charge = client.v1.charges.retrieve(str(error.charge))
    assert charge.status == "failed" and charge.failure_code == code and charge.outcome.reason == decline_code
    # Saving the card on a customer is declined the same way.
    customer = client.v1.customers.create({"email": f"{token}@example.io"})
    with pytest.raises(stripe.CardError) as on_attach:
        client.v1.payment_methods.attach(token, {"customer": customer.id})
    assert on_attach.value.error is not None and on_attach.value.error.decline_code == decline_code


@pytest.mark.parametrize(("token", "brand", "funding", "last4"), BRANDS)
def test_cards_by_brand_succeed(client: stripe.StripeClient, token: str, brand: str, funding: str,
                                last4: str) -> None:
    intent = _pay(client, token)
    assert intent.status == "succeeded"
    card = client.v1.payment_methods.retrieve(intent.payment_method).card
    assert (card.brand, card.funding, card.last4) == (brand, funding, last4)


def test_attaches_then_every_charge_fails(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "cf@example.io"})
    pm = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer.id})
    assert pm.card.last4 == "0341" and pm.customer == customer.id
    with pytest.raises(stripe.CardError):
        _pay(client, pm.id, customer=customer.id)


@pytest.mark.emulator_only(reason="completes 3-D Secure through /_emulator/ (a browser step on Stripe)")
def test_authentication_cards(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    for token in ("pm_card_authenticationRequired", "pm_card_threeDSecure2Required", "pm_card_threeDSecureRequired"):
        assert _pay(client, token).status == "requires_action", token
    # Authenticate on setup: the first payment needs 3-D Secure (a browser step, emulator helper);
    # the card saved by it then pays off-session without a challenge.
    customer = client.v1.customers.create({"email": "setup@example.io"})
    pm = client.v1.payment_methods.attach("pm_card_authenticationRequiredOnSetup", {"customer": customer.id})
    assert pm.card.last4 == "3155"
    first = _pay(client, pm.id, customer=customer.id)
    assert first.status == "requires_action"
    emulator.admin(f"payment_intents/{first.id}/authenticate")
    assert client.v1.payment_intents.retrieve(first.id).status == "succeeded"
    later = _pay(client, pm.id, customer=customer.id, off_session=True)
    assert later.status == "succeeded"
    # Authenticated, then declined.
    declining = _pay(client, "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds")
    assert declining.status == "requires_action"
    emulator.admin(f"payment_intents/{declining.id}/authenticate")
    failed = client.v1.payment_intents.retrieve(declining.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.decline_code == "insufficient_funds"


def test_radar_and_checks(client: stripe.StripeClient) -> None:
    for token in ("pm_card_radarBlock", "pm_card_riskLevelHighest"):
        with pytest.raises(stripe.CardError) as blocked:
            _pay(client, token)
        assert blocked.value.error is not None and blocked.value.error.decline_code == "fraudulent"
        outcome = client.v1.charges.retrieve(str(blocked.value.error.charge)).outcome
        assert outcome.type == "blocked" and outcome.risk_level == "highest"
    elevated = client.v1.charges.retrieve(_pay(client, "pm_card_riskLevelElevated").latest_charge)
    assert elevated.outcome.risk_level == "elevated" and elevated.outcome.type == "authorized"
    cvc = client.v1.charges.retrieve(_pay(client, "pm_card_cvcCheckFail").latest_charge)
    assert cvc.payment_method_details.card.checks.cvc_check == "fail"
    zip_fail = client.v1.charges.retrieve(_pay(client, "pm_card_avsZipFail").latest_charge)
    assert zip_fail.payment_method_details.card.checks.address_postal_code_check == "fail"


def test_dispute_and_efw_cards(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    expected = {"pm_card_createDispute": ("fraudulent", "needs_response", 1),
                "pm_card_createDisputeProductNotReceived": ("product_not_received", "needs_response", 1),
                "pm_card_createMultipleDisputes": ("fraudulent", "needs_response", 2),
                "pm_card_createDisputeInquiry": (None, "warning_needs_response", 1)}
    for token, (reason, status, count) in expected.items():
        charge_id = _pay(client, token).latest_charge
        disputes = _wait_for(lambda cid=charge_id: client.v1.disputes.list({"charge": cid}).data)
        assert len(disputes) == count, token
        assert all(d.status == status and (reason is None or d.reason == reason) for d in disputes), token
    efw_charge = _pay(client, "pm_card_createIssuerFraudRecord").latest_charge
    warnings = _wait_for(lambda: client.v1.radar.early_fraud_warnings.list({"charge": efw_charge}).data)
    assert len(warnings) == 1 and warnings[0].actionable is True
    # An inquiry escalates to a chargeback with Stripe's escalate_inquiry_evidence.
    inquiry_charge = _pay(client, "pm_card_createDisputeInquiry").latest_charge
    inquiry = _wait_for(lambda: client.v1.disputes.list({"charge": inquiry_charge}).data)[0]
    client.v1.disputes.update(inquiry.id, {"evidence": {"uncategorized_text": "escalate_inquiry_evidence"}})
    assert _wait_for(lambda: client.v1.disputes.retrieve(inquiry.id).status == "needs_response")


@pytest.mark.emulator_only(reason=empty_account("refund.updated and refund.failed events"))
def test_asynchronous_refunds(client: stripe.StripeClient) -> None:
    pending = client.v1.refunds.create({"payment_intent": _pay(client, "pm_card_pendingRefund").id})
    assert pending.status == "pending"
    assert _wait_for(lambda: client.v1.refunds.retrieve(pending.id).status == "succeeded")
    updated = client.v1.events.list({"type": "refund.updated"}).data
    assert [e.data.object.id for e in updated] == [pending.id]
    assert updated[0].data.previous_attributes.to_dict() == {"status": "pending", "pending_reason": "processing"}
    failing = client.v1.refunds.create({"payment_intent": _pay(client, "pm_card_refundFail").id})
    assert failing.status == "succeeded"
    assert _wait_for(lambda: client.v1.refunds.retrieve(failing.id).status == "failed")
    assert [e.data.object.id for e in client.v1.events.list({"type": "refund.failed"}).data] == [failing.id]
    assert client.v1.charges.retrieve(failing.charge).amount_refunded == 0
