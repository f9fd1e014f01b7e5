"""Contract tests through the real stripe SDK: subscription schedules — create from phases and
from_subscription, retrieve, update, release, cancel, list; the phase switch at its start on a test
clock (the renewal bills the new phase), end_behavior release and cancel, subscription_schedule.* events."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle

START = 1_800_000_000  # 2027-01-15 08:00 UTC


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_schedules", base_addresses={"api": emulator.base_url},
                               max_network_retries=0)


def _prices(client: stripe.StripeClient) -> tuple[Any, Any]:
    pro = client.v1.prices.create({"currency": "usd", "unit_amount": 2900, "product_data": {"name": "Pro"},
                                   "recurring": {"interval": "month"}})
    basic = client.v1.prices.create({"currency": "usd", "unit_amount": 900, "product_data": {"name": "Basic"},
                                     "recurring": {"interval": "month"}})
    return pro, basic


def _customer(client: stripe.StripeClient, clock: str | None = None) -> Any:
    params: dict[str, Any] = {"email": "sched@example.io", "payment_method": "pm_card_visa",
                              "invoice_settings": {"default_payment_method": "pm_card_visa"}}
    if clock:
        params["test_clock"] = clock
    return client.v1.customers.create(params)  # type: ignore[arg-type]


def _schedule_events(client: stripe.StripeClient, schedule_id: str) -> list[str]:
    events = reversed(client.v1.events.list({"limit": 100}).data)
    return [e.type for e in events if e.type.startswith("subscription_schedule.")
            and e.data.object.to_dict().get("id") == schedule_id]


def test_phases_switch_at_their_start_on_a_test_clock_then_release(client: stripe.StripeClient) -> None:
    pro, basic = _prices(client)
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": START})
    customer = _customer(client, clock.id)
    schedule = client.v1.subscription_schedules.create({
        "customer": customer.id, "start_date": "now", "end_behavior": "release",
        "phases": [{"items": [{"price": pro.id}], "duration": {"interval": "month", "interval_count": 1}},
                   {"items": [{"price": basic.id, "quantity": 2}], "duration": {"interval": "month"}}]})
    assert schedule.status == "active" and schedule.subscription is not None
    first, second = schedule.phases
    assert (first.start_date, first.end_date, second.end_date) == (START, 1_802_678_400, 1_805_097_600)
    assert schedule.current_phase is not None and schedule.current_phase.end_date == first.end_date
    subscription = client.v1.subscriptions.retrieve(str(schedule.subscription))
    assert subscription.schedule == schedule.id and subscription["items"].data[0].price.id == pro.id

    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": first.end_date - 60})
    assert client.v1.subscriptions.retrieve(subscription.id)["items"].data[0].price.id == pro.id
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": first.end_date + 7200})
    switched = client.v1.subscriptions.retrieve(subscription.id)
    assert [(i.price.id, i.quantity) for i in switched["items"].data] == [(basic.id, 2)]
    renewal = client.v1.invoices.retrieve(str(switched.latest_invoice))
    assert (renewal.billing_reason, renewal.amount_paid) == ("subscription_cycle", 1800)  # the new phase
    current = client.v1.subscription_schedules.retrieve(schedule.id).current_phase
    assert current is not None and current.start_date == first.end_date

    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": second.end_date + 7200})
    released = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (released.status, released.subscription, released.released_subscription) == (
        "released", None, subscription.id)
    assert released.released_at == second.end_date and released.current_phase is None
    kept = client.v1.subscriptions.retrieve(subscription.id)
    assert kept.status == "active" and kept.schedule is None
    assert _schedule_events(client, schedule.id) == [
        "subscription_schedule.created", "subscription_schedule.updated", "subscription_schedule.released"]


def test_end_behavior_cancel_completes_and_cancels(client: stripe.StripeClient) -> None:
    pro, _basic = _prices(client)
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": START})
    customer = _customer(client, clock.id)
    schedule = client.v1.subscription_schedules.create({
        "customer": customer.id, "end_behavior": "cancel",
        "phases": [{"items": [{"price": pro.id}], "duration": {"interval": "month"}}]})
    end = schedule.phases[0].end_date
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 60})
    done = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (done.status, done.completed_at) == ("completed", end)
    assert client.v1.subscriptions.retrieve(str(done.subscription)).status == "canceled"
    assert _schedule_events(client, schedule.id)[-1] == "subscription_schedule.completed"


def test_future_start_is_not_started_until_the_clock_reaches_it(client: stripe.StripeClient) -> None:
    pro, _basic = _prices(client)
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": START})
    customer = _customer(client, clock.id)
    schedule = client.v1.subscription_schedules.create({
        "customer": customer.id, "start_date": START + 86_400,
        "phases": [{"items": [{"price": pro.id}], "duration": {"interval": "month"}}]})
    assert (schedule.status, schedule.subscription, schedule.current_phase) == ("not_started", None, None)
    assert [s.id for s in client.v1.subscription_schedules.list({"scheduled": True}).data] == [schedule.id]
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": START + 90_000})
    started = client.v1.subscription_schedules.retrieve(schedule.id)
    assert started.status == "active" and started.subscription is not None
    subscription = client.v1.subscriptions.retrieve(str(started.subscription))
    assert subscription.start_date == START + 86_400 and subscription.status == "active"


def test_from_subscription_update_release_and_cancel(client: stripe.StripeClient) -> None:
    pro, basic = _prices(client)
    customer = _customer(client)
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}]})
    schedule = client.v1.subscription_schedules.create({"from_subscription": subscription.id})
    item = subscription["items"].data[0]
    assert (schedule.status, schedule.end_behavior, schedule.subscription) == ("active", "release", subscription.id)
    assert (schedule.phases[0].start_date, schedule.phases[0].end_date) == (
        item.current_period_start, item.current_period_end)
    assert schedule.phases[0].items[0].price == pro.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_schedules.create({"from_subscription": subscription.id})  # already scheduled

    updated = client.v1.subscription_schedules.update(schedule.id, {
        "end_behavior": "cancel", "metadata": {"plan": "downgrade"},
        "phases": [{"items": [{"price": pro.id}], "start_date": item.current_period_start,
                    "end_date": item.current_period_end},
                   {"items": [{"price": basic.id}], "duration": {"interval": "month"}}]})
    assert updated.end_behavior == "cancel" and len(updated.phases) == 2
    assert updated.phases[1].start_date == item.current_period_end
    assert [s.id for s in client.v1.subscription_schedules.list({"customer": customer.id}).data] == [schedule.id]

    released = client.v1.subscription_schedules.release(schedule.id)
    assert (released.status, released.released_subscription, released.subscription) == (
        "released", subscription.id, None)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_schedules.cancel(schedule.id)  # only not_started or active
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"

    again = client.v1.subscription_schedules.create({"from_subscription": subscription.id})
    canceled = client.v1.subscription_schedules.cancel(again.id)
    assert canceled.status == "canceled" and canceled.canceled_at is not None
    assert client.v1.subscriptions.retrieve(subscription.id).status == "canceled"
    assert _schedule_events(client, again.id) == ["subscription_schedule.created", "subscription_schedule.canceled"]
