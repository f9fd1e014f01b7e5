"""Contract tests for the billing calendar on test clocks, through the real stripe SDK:
anchor-day months, the renewal invoice's hour as a draft, invoice.upcoming, incomplete
subscriptions expiring after 23 hours, and prorations by the second over the real period."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle
from tests.integration.stripe_target import StripeTarget

HOUR = 3600
DAY = 86_400


def _ts(*parts: int) -> int:
    return int(datetime(*parts).replace(tzinfo=UTC).timestamp())  # type: ignore[arg-type]


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_calendar")


def _monthly(client: stripe.StripeClient, amount: int, name: str = "Plan") -> Any:
    return client.v1.prices.create({"currency": "usd", "unit_amount": amount, "product_data": {"name": name},
                                    "recurring": {"interval": "month"}})


def _on_clock(client: stripe.StripeClient, frozen: int, card: str = "pm_card_visa") -> tuple[Any, Any]:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": frozen})
    customer = client.v1.customers.create({"email": f"{frozen}@example.io", "test_clock": clock.id,
                                           "payment_method": card})
    return clock, customer


def _events_for(client: stripe.StripeClient, event_type: str, invoice_id: str) -> list[Any]:
    return [e for e in client.v1.events.list({"type": event_type, "limit": 100}).data
            if e.data.object.to_dict().get("id") == invoice_id]


def test_anchor_day_months_and_the_renewal_drafts_for_an_hour(client: stripe.StripeClient) -> None:
    anchor = _ts(2027, 1, 31, 10, 15, 30)
    clock, customer = _on_clock(client, anchor)
    subscription = client.v1.subscriptions.create({"customer": customer.id,
                                                   "items": [{"price": _monthly(client, 1000).id}]})
    assert subscription.billing_cycle_anchor == anchor
    assert subscription["items"].data[0].current_period_end == _ts(2027, 2, 28, 10, 15, 30)
    renewal = _ts(2027, 2, 28, 10, 15, 30)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal + 10 * 60})
    renewed = client.v1.subscriptions.retrieve(subscription.id)
    item = renewed["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (renewal, _ts(2027, 3, 31, 10, 15, 30))
    draft = client.v1.invoices.retrieve(renewed.latest_invoice)
    assert draft.billing_reason == "subscription_cycle" and draft.status == "draft" and draft.created == renewal
    assert draft.automatically_finalizes_at == renewal + HOUR and draft.attempt_count == 0
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal + 2 * HOUR})
    paid = client.v1.invoices.retrieve(draft.id)
    assert paid.status == "paid" and paid.status_transitions.finalized_at == renewal + HOUR
    assert [e.created for e in _events_for(client, "invoice.finalized", draft.id)] == [renewal + HOUR]
    # The following month is the anchor's day again (Mar 31), not 28 days on.
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": _ts(2027, 4, 1)})
    again = client.v1.subscriptions.retrieve(subscription.id)["items"].data[0]
    assert again.current_period_start == _ts(2027, 3, 31, 10, 15, 30)
    assert again.current_period_end == _ts(2027, 4, 30, 10, 15, 30)


@pytest.mark.emulator_only(
    reason="sets the invoice.upcoming lead time through /_emulator/billing/config (a Dashboard setting on Stripe)")
def test_invoice_upcoming_the_configured_days_before_renewal(client: stripe.StripeClient,
                                                             emulator: EmulatorHandle) -> None:
    emulator.admin("billing/config", {"upcoming_days": 3})
    start = _ts(2027, 5, 10, 12)
    clock, customer = _on_clock(client, start)
    subscription = client.v1.subscriptions.create({"customer": customer.id,
                                                   "items": [{"price": _monthly(client, 1500).id}]})
    renewal = _ts(2027, 6, 10, 12)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal - 4 * DAY})
    assert client.v1.events.list({"type": "invoice.upcoming"}).data == []
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal - 2 * DAY})
    upcoming = client.v1.events.list({"type": "invoice.upcoming"}).data
    assert len(upcoming) == 1 and upcoming[0].created == renewal - 3 * DAY
    invoice = upcoming[0].data.object
    assert "id" not in invoice.to_dict()  # Stripe: the upcoming invoice has no id
    assert invoice.customer == customer.id and invoice.amount_due == 1500
    assert invoice.parent.subscription_details.subscription == subscription.id
    assert emulator.admin("billing/config", method="GET")["upcoming_days"] == 3


def test_incomplete_expires_after_23_hours(client: stripe.StripeClient) -> None:
    start = _ts(2027, 7, 1, 9)
    clock, customer = _on_clock(client, start, card="pm_card_authenticationRequired")
    subscription = client.v1.subscriptions.create({"customer": customer.id,
                                                   "items": [{"price": _monthly(client, 2000).id}]})
    assert subscription.status == "incomplete"
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": start + 22 * HOUR})
    assert client.v1.subscriptions.retrieve(subscription.id).status == "incomplete"
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": start + 24 * HOUR})
    expired = client.v1.subscriptions.retrieve(subscription.id)
    assert expired.status == "incomplete_expired" and expired.ended_at == start + 23 * HOUR
    assert client.v1.invoices.retrieve(expired.latest_invoice).status == "void"
    # A terminal state: no renewal a month later.
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": start + 40 * DAY})
    assert [i.id for i in client.v1.invoices.list({"subscription": subscription.id}).data] == [expired.latest_invoice]


def test_prorations_by_the_second_over_the_real_period(client: stripe.StripeClient) -> None:
    start = _ts(2027, 2, 1)  # February 2027: 28 days
    clock, customer = _on_clock(client, start)
    basic, pro = _monthly(client, 2800, "Basic"), _monthly(client, 5600, "Pro")
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": basic.id}]})
    halfway = _ts(2027, 2, 15)  # exactly half of February's seconds remain
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": halfway})
    item = subscription["items"].data[0]
    client.v1.subscriptions.update(subscription.id, {"items": [{"id": item.id, "price": pro.id}],
                                                     "proration_behavior": "always_invoice"})
    invoice = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(subscription.id).latest_invoice)
    assert invoice.billing_reason == "subscription_update"
    assert sorted(line.amount for line in invoice.lines.data) == [-1400, 2800]
    assert all((line.period.start, line.period.end) == (halfway, _ts(2027, 3, 1)) for line in invoice.lines.data)
