"""Contract tests for failed renewal payments on test clocks, through the real stripe SDK: the
retry schedule (Smart Retries' recommended 8 tries within 2 weeks, or a custom schedule of up to
three retries), `attempt_count` and `next_payment_attempt` on the invoice, and what the account's
setting does once every retry has failed (emulator/billing/retry_schedule.py)."""

from __future__ import annotations

import json
import urllib.error
from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle
from tests.integration.stripe_target import StripeTarget

HOUR = 3600
DAY = 86_400
START = 1_830_000_000
SMART_GAP = 14 * DAY // 8  # the emulator spreads Smart Retries' 8 tries evenly over 2 weeks


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_retries")


def _failing_renewal(client: stripe.StripeClient) -> tuple[Any, Any, int]:
    """A monthly subscription whose card starts failing before its first renewal; the clock is
    advanced past the renewal's hour as a draft, so the first attempt has failed."""
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": START})
    customer = client.v1.customers.create({"email": "dunning@example.io", "test_clock": clock.id,
                                           "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 2500, "product_data": {"name": "Team"},
                                     "recurring": {"interval": "month"}})
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": failing.id}})
    renewal = subscription["items"].data[0].current_period_end
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal + HOUR + 60})
    return clock, client.v1.subscriptions.retrieve(subscription.id), renewal + HOUR


def test_a_failed_renewal_is_past_due_with_a_retry_inside_the_window(client: stripe.StripeClient) -> None:
    _clock, subscription, failed_at = _failing_renewal(client)
    assert subscription.status == "past_due"
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    assert invoice.status == "open" and invoice.attempted is True and invoice.attempt_count == 1
    # Smart Retries' recommended default: 8 tries within 2 weeks, so the next one is inside them.
    assert invoice.next_payment_attempt is not None
    assert failed_at < invoice.next_payment_attempt <= failed_at + 14 * DAY


@pytest.mark.emulator_only(reason="Smart Retries' moments are Stripe's model's; the emulator spreads them evenly")
def test_default_smart_retries_then_the_subscription_is_canceled(client: stripe.StripeClient,
                                                                 emulator: EmulatorHandle) -> None:
    config = emulator.admin("billing/config", method="GET")
    assert config["retries"] == {"mode": "smart", "count": 8, "window_days": 14}
    assert config["after_retries"] == {"subscription": "cancel", "invoice": "past_due"}
    clock, subscription, failed_at = _failing_renewal(client)
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    assert invoice.next_payment_attempt == failed_at + SMART_GAP
    # Three retries in: each one counted, each one failed, the next one a gap later.
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + 3 * SMART_GAP + 60})
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.attempt_count == 4 and invoice.next_payment_attempt == failed_at + 4 * SMART_GAP
    assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"
    # The eighth retry fails at the end of the two weeks: no further attempt, the subscription canceled.
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + 15 * DAY})
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.attempt_count == 9 and invoice.next_payment_attempt is None
    assert invoice.status == "open"  # "leave the invoice past-due"
    canceled = client.v1.subscriptions.retrieve(subscription.id)
    assert canceled.status == "canceled" and canceled.ended_at == failed_at + 8 * SMART_GAP
    assert canceled.to_dict()["cancellation_details"]["reason"] == "payment_failed"
    failures = [e for e in client.v1.events.list({"type": "invoice.payment_failed", "limit": 100}).data
                if e.data.object.id == invoice.id]
    assert sorted(e.data.object.attempt_count for e in failures) == list(range(1, 10))
    deleted = client.v1.events.list({"type": "customer.subscription.deleted"}).data
    assert [e.data.object.id for e in deleted] == [subscription.id]


@pytest.mark.emulator_only(reason="sets the retry schedule through /_emulator/billing/config (a Dashboard setting)")
def test_custom_schedule_then_unpaid_and_uncollectible(client: stripe.StripeClient,
                                                       emulator: EmulatorHandle) -> None:
    emulator.admin("billing/config", {"retries": {"mode": "custom", "days": [1, 3]},
                                      "after_retries": {"subscription": "unpaid", "invoice": "uncollectible"}})
    clock, subscription, failed_at = _failing_renewal(client)
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    assert invoice.next_payment_attempt == failed_at + DAY
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + 2 * DAY})
    invoice = client.v1.invoices.retrieve(invoice.id)
    # Each retry is its number of days after the previous attempt.
    assert invoice.attempt_count == 2 and invoice.next_payment_attempt == failed_at + 4 * DAY
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + 5 * DAY})
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.attempt_count == 3 and invoice.next_payment_attempt is None
    assert invoice.status == "uncollectible"
    assert invoice.status_transitions.marked_uncollectible_at == failed_at + 4 * DAY
    assert invoice.to_dict()["status_details"] == {"uncollectible": {"reason": "max_payment_attempts"}}
    assert client.v1.subscriptions.retrieve(subscription.id).status == "unpaid"
    marked = client.v1.events.list({"type": "invoice.marked_uncollectible"}).data
    assert [e.data.object.id for e in marked] == [invoice.id]
    # An uncollectible invoice can still be paid; the subscription is active again.
    paid = client.v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"})
    assert paid.status == "paid" and not paid.to_dict().get("status_details")
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"


@pytest.mark.emulator_only(reason="sets the retry schedule through /_emulator/billing/config (a Dashboard setting)")
def test_leave_past_due_keeps_the_subscription_and_the_invoice_open(client: stripe.StripeClient,
                                                                    emulator: EmulatorHandle) -> None:
    emulator.admin("billing/config", {"retries": {"mode": "smart", "count": 2, "window_days": 7},
                                      "after_retries": {"subscription": "past_due"}})
    clock, subscription, failed_at = _failing_renewal(client)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + 8 * DAY})
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    assert invoice.attempt_count == 3 and invoice.next_payment_attempt is None and invoice.status == "open"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"


@pytest.mark.emulator_only(reason="the settings are the emulator's /_emulator/billing/config")
@pytest.mark.parametrize(("payload", "param"), [
    ({"retries": {"mode": "custom", "days": [1, 2, 3, 4]}}, "retries[days]"),
    ({"retries": {"mode": "smart", "count": 8, "window_days": 10}}, "retries[window_days]"),
    ({"retries": {"mode": "sometimes"}}, "retries[mode]"),
    ({"after_retries": {"subscription": "pause_forever"}}, "after_retries[subscription]"),
    ({"after_retries": {"invoice": "void"}}, "after_retries[invoice]"),
])
def test_settings_outside_what_the_dashboard_offers_are_refused(emulator: EmulatorHandle, payload: dict[str, Any],
                                                                param: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        emulator.admin("billing/config", payload)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"]["param"] == param
    assert emulator.admin("billing/config", method="GET")["retries"]["mode"] == "smart"


@pytest.mark.emulator_only(reason="sets the end of retries to unpaid through /_emulator/billing/config")
def test_an_unpaid_subscription_keeps_invoicing_in_drafts_without_attempting_them(
        client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    emulator.admin("billing/config", {"retries": {"mode": "custom", "days": [1]},
                                      "after_retries": {"subscription": "unpaid"}})
    clock, subscription, failed_at = _failing_renewal(client)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + 2 * DAY})
    first = client.v1.invoices.retrieve(subscription.latest_invoice)
    assert client.v1.subscriptions.retrieve(subscription.id).status == "unpaid"
    assert first.status == "open" and first.next_payment_attempt is None  # the latest invoice remains open
    # The next cycle's invoice is generated but stays a draft, hours after it would have been attempted.
    renewal = client.v1.subscriptions.retrieve(subscription.id)["items"].data[0].current_period_end
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal + 3 * HOUR})
    unpaid = client.v1.subscriptions.retrieve(subscription.id)
    assert unpaid.status == "unpaid" and unpaid.latest_invoice != first.id
    draft = client.v1.invoices.retrieve(str(unpaid.latest_invoice))
    assert draft.billing_reason == "subscription_cycle" and draft.status == "draft"
    assert draft.auto_advance is False and draft.attempted is False and draft.attempt_count == 0
    assert client.v1.invoices.retrieve(first.id).attempt_count == 2  # no attempt on the old one either
    failed = [e.data.object.id for e in client.v1.events.list({"type": "invoice.payment_failed", "limit": 100}).data]
    assert draft.id not in failed
    # Reactivating: new payment details, auto_advance back on, finalize and pay the latest invoice
    # (paying only the older one leaves the subscription unpaid).
    client.v1.customers.update(subscription.customer, {"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    assert client.v1.invoices.pay(first.id).status == "paid"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "unpaid"
    client.v1.invoices.update(draft.id, {"auto_advance": True})
    finalized = client.v1.invoices.finalize_invoice(draft.id)
    assert finalized.status == "open" and finalized.attempted is False
    assert client.v1.invoices.pay(draft.id).status == "paid"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"


@pytest.mark.emulator_only(reason="the retry's moment is the emulator's even spread of Smart Retries")
def test_no_retry_charges_while_no_payment_method_is_available(client: stripe.StripeClient) -> None:
    clock, subscription, failed_at = _failing_renewal(client)
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    charges_before = len(client.v1.charges.list({"customer": subscription.customer}).data)
    for pm in client.v1.payment_methods.list({"customer": subscription.customer, "type": "card"}).data:
        client.v1.payment_methods.detach(pm.id)
    # "Stripe doesn't retry payments when no payment method is available": the retry's moment passes
    # without a new charge and the invoice stays open.
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + SMART_GAP + 60})
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.status == "open" and invoice.amount_paid == 0
    assert len(client.v1.charges.list({"customer": subscription.customer}).data) == charges_before
    # A new payment method: the next scheduled retry charges it.
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": subscription.customer})
    client.v1.customers.update(subscription.customer, {"invoice_settings": {"default_payment_method": card.id}})
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": failed_at + 3 * SMART_GAP})
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"
