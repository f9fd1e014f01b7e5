"""Contract tests through the real stripe SDK: Radar value lists and items, the Radar context a
charge carries (outcome, card checks, 3-D Secure, fingerprint), and refunds that settle later
on Stripe's refund test cards, with their refund.* events."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle
from tests.integration.stripe_target import StripeTarget


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_radar")


def _fields(cls: type) -> set[str]:
    return {name for name in cls.__annotations__ if name not in ("deleted", "OBJECT_NAME")}


def _targets() -> list[str]:
    return ["emulator", *(["stripe-test-account"] if os.environ.get("STRIPE_TEST_API_KEY") else [])]


@pytest.mark.parametrize("target", _targets())
def test_value_list_lifecycle_and_shapes(target: str, emulator: EmulatorHandle) -> None:
    """On the emulator and (with STRIPE_TEST_API_KEY, an account with Radar for Fraud Teams) a real
    test-mode account; aliases get a random suffix there and the lists are deleted afterwards."""
    if target == "emulator":
        client = stripe.StripeClient("sk_test_radar", base_addresses={"api": emulator.base_url},
                                     max_network_retries=0)
    else:
        client = stripe.StripeClient(os.environ["STRIPE_TEST_API_KEY"], max_network_retries=2)
    suffix = "" if target == "emulator" else f"_{uuid.uuid4().hex[:8]}"
    created: list[str] = []
    try:
        _lifecycle(client, suffix, created)
    finally:
        for list_id in created:
            with contextlib.suppress(stripe.InvalidRequestError):  # already deleted by the test
                client.v1.radar.value_lists.delete(list_id)


def _lifecycle(client: stripe.StripeClient, suffix: str, created: list[str]) -> None:
    cards = client.v1.radar.value_lists.create({"alias": f"console_blocked_cards{suffix}", "name": "Blocked cards",
                                                "item_type": "card_fingerprint"})
    created.append(cards.id)
    assert set(cards.to_dict()) == _fields(stripe.radar.ValueList)
    assert (cards.object, cards.item_type, cards.list_items.data) == ("radar.value_list", "card_fingerprint", [])
    assert cards.id.startswith("rsl_")
    emails = client.v1.radar.value_lists.create({"alias": f"console_blocked_emails{suffix}",
                                                 "name": "Blocked emails", "item_type": "email"})
    created.append(emails.id)
    plain = client.v1.radar.value_lists.create({"alias": f"plain{suffix}", "name": "Plain"})
    created.append(plain.id)
    assert plain.item_type == "string"

    item = client.v1.radar.value_list_items.create({"value_list": cards.id, "value": "fp0123456789abcd"})
    assert set(item.to_dict()) == _fields(stripe.radar.ValueListItem)
    assert (item.object, item.value, item.value_list) == ("radar.value_list_item", "fp0123456789abcd", cards.id)
    client.v1.radar.value_list_items.create({"value_list": emails.id, "value": "Fraud@Example.io"})

    assert [v.id for v in client.v1.radar.value_lists.list({"alias": f"console_blocked_cards{suffix}"}).data] == [
        cards.id]
    assert [v.id for v in client.v1.radar.value_lists.list({"contains": "fp0123456789abcd"}).data] == [cards.id]
    assert [i.id for i in client.v1.radar.value_lists.retrieve(cards.id).list_items.data] == [item.id]
    found = client.v1.radar.value_list_items.list({"value_list": emails.id, "value": "fraud@example.io"}).data
    assert [i.value for i in found] == ["Fraud@Example.io"]

    deleted = client.v1.radar.value_list_items.delete(item.id)
    assert deleted.deleted is True
    assert client.v1.radar.value_list_items.list({"value_list": cards.id}).data == []
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.radar.value_list_items.retrieve(item.id)
    assert missing.value.http_status == 404

    assert client.v1.radar.value_lists.delete(emails.id).deleted is True
    assert client.v1.radar.value_lists.list({"alias": f"console_blocked_emails{suffix}"}).data == []


@pytest.mark.parametrize("params, param", [
    ({"name": "No alias"}, "alias"),
    ({"alias": "x", "name": "Bad", "item_type": "phone_number"}, "item_type"),
])
def test_value_list_refusals(client: stripe.StripeClient, params: dict[str, Any], param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.radar.value_lists.create(params)  # type: ignore[arg-type]
    assert refused.value.param == param


def test_items_need_an_existing_list(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.radar.value_list_items.create({"value_list": "rsl_missing", "value": "x"})
    assert (refused.value.http_status, refused.value.param) == (404, "value_list")


def _pay(client: stripe.StripeClient, card: str, amount: int = 5000) -> Any:
    customer = client.v1.customers.create({"email": "radar@example.io"})
    intent = client.v1.payment_intents.create({"amount": amount, "currency": "usd", "customer": customer.id,
                                               "payment_method": card, "confirm": True})
    return client.v1.charges.retrieve(str(intent.latest_charge))


def test_charge_carries_radar_context(client: stripe.StripeClient) -> None:
    charge = _pay(client, "pm_card_createIssuerFraudRecord")
    assert charge.outcome is not None
    assert (charge.outcome.type, charge.outcome.risk_level) == ("authorized", "elevated")
    assert isinstance(charge.outcome.risk_score, int) and charge.outcome.seller_message
    card = charge.payment_method_details.card
    assert set(card.checks.to_dict()) == {"address_line1_check", "address_postal_code_check", "cvc_check"}
    assert card.checks.cvc_check == "pass" and card.three_d_secure is None
    again = _pay(client, "pm_card_createIssuerFraudRecord")
    assert again.payment_method_details.card.fingerprint == card.fingerprint
    assert _pay(client, "pm_card_visa").payment_method_details.card.fingerprint != card.fingerprint


def _wait_status(client: stripe.StripeClient, refund_id: str, status: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        refund = client.v1.refunds.retrieve(refund_id)
        if refund.status == status:
            return refund
        time.sleep(0.1)
    raise AssertionError(f"refund {refund_id} never became {status}")


def _events(client: stripe.StripeClient, refund_id: str) -> list[tuple[str, Any]]:
    events = client.v1.events.list({"limit": 100}).data
    shown = [e.to_dict() for e in reversed(events)]
    return [(e["type"], e["data"].get("previous_attributes")) for e in shown if e["data"]["object"]["id"] == refund_id]


def test_refund_fail_card_fails_later(client: stripe.StripeClient) -> None:
    charge = _pay(client, "pm_card_refundFail")
    refund = client.v1.refunds.create({"charge": charge.id, "amount": 2000, "reason": "requested_by_customer"})
    assert refund.status == "succeeded"
    failed = _wait_status(client, refund.id, "failed")
    assert failed.failure_reason == "expired_or_canceled_card"
    assert client.v1.charges.retrieve(charge.id).amount_refunded == 0
    types = [t for t, _ in _events(client, refund.id)]
    assert types == ["refund.created", "refund.failed", "charge.refund.updated"]
    assert _events(client, refund.id)[1][1]["status"] == "succeeded"


def test_pending_refund_card_succeeds_later(client: stripe.StripeClient) -> None:
    charge = _pay(client, "pm_card_pendingRefund")
    refund = client.v1.refunds.create({"charge": charge.id, "reason": "duplicate"})
    assert (refund.status, refund.pending_reason) == ("pending", "processing")
    assert _wait_status(client, refund.id, "succeeded").pending_reason is None
    assert [t for t, _ in _events(client, refund.id)] == ["refund.created", "refund.updated", "charge.refund.updated"]
