"""Contract tests through the real stripe SDK: coupons and promotion codes, and the discounts they
make on a subscription's invoices (discounts, total_discount_amounts, line discount_amounts, totals)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle

START = 1_800_000_000


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_discounts", base_addresses={"api": emulator.base_url},
                               max_network_retries=0)


def _setup(client: stripe.StripeClient, clock: str | None = None) -> tuple[Any, Any]:
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 5000, "product_data": {"name": "Team"},
                                     "recurring": {"interval": "month"}})
    params: dict[str, Any] = {"email": "d@example.io", "payment_method": "pm_card_visa",
                              "invoice_settings": {"default_payment_method": "pm_card_visa"}}
    if clock:
        params["test_clock"] = clock
    return price, client.v1.customers.create(params)  # type: ignore[arg-type]


def test_coupon_crud(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create({"id": "WELCOME25", "percent_off": 25, "duration": "repeating",
                                       "duration_in_months": 3, "name": "Welcome"})
    assert (coupon.id, coupon.percent_off, coupon.duration, coupon.duration_in_months, coupon.valid) == (
        "WELCOME25", 25, "repeating", 3, True)
    flat = client.v1.coupons.create({"amount_off": 1000, "currency": "usd"})
    assert (flat.duration, flat.amount_off, flat.currency, flat.percent_off) == ("once", 1000, "usd", None)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.create({"amount_off": 1000})  # amount_off needs a currency
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.create({"percent_off": 10, "duration": "repeating"})  # needs duration_in_months
    renamed = client.v1.coupons.update(coupon.id, {"name": "Welcome back", "metadata": {"team": "growth"}})
    assert renamed.name == "Welcome back" and renamed.to_dict()["metadata"] == {"team": "growth"}
    assert {c.id for c in client.v1.coupons.list().data} == {coupon.id, flat.id}
    assert client.v1.coupons.delete(flat.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.coupons.retrieve(flat.id)
    assert gone.value.http_status == 404


def test_promotion_codes(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create({"percent_off": 10})
    promo = client.v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": coupon.id},
                                              "code": "SPRING", "max_redemptions": 5})
    assert (promo.object, promo.code, promo.active, promo.promotion.coupon, promo.times_redeemed) == (
        "promotion_code", "SPRING", True, coupon.id, 0)
    generated = client.v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": coupon.id}})
    assert len(generated.code) == 8
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "spring"})
    assert [p.id for p in client.v1.promotion_codes.list({"code": "SPRING"}).data] == [promo.id]
    off = client.v1.promotion_codes.update(promo.id, {"active": False})
    assert off.active is False
    assert [p.id for p in client.v1.promotion_codes.list({"active": True}).data] == [generated.id]
    assert client.v1.promotion_codes.retrieve(promo.id).active is False


def test_subscription_discounts_reflected_in_invoice_totals(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": START})
    price, customer = _setup(client, clock.id)
    coupon = client.v1.coupons.create({"percent_off": 20, "duration": "repeating", "duration_in_months": 2})
    promo = client.v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": coupon.id},
                                              "code": "TWENTY"})
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                                   "discounts": [{"promotion_code": promo.id}]})
    assert len(subscription.discounts) == 1
    discount_id = str(subscription.discounts[0])
    assert discount_id.startswith("di_")
    discount = client.v1.subscriptions.retrieve(subscription.id, {"expand": ["discounts"]}).discounts[0]
    assert isinstance(discount, stripe.Discount)
    assert (discount.source.coupon, discount.promotion_code, discount.subscription) == (
        coupon.id, promo.id, subscription.id)
    first = client.v1.invoices.retrieve(str(subscription.latest_invoice))
    assert (first.subtotal, first.total, first.amount_paid) == (5000, 4000, 4000)
    assert [(d.amount, d.discount) for d in first.total_discount_amounts or []] == [(1000, discount_id)]
    assert first.discounts == [discount_id]
    assert [(d.amount, d.discount) for d in first.lines.data[0].discount_amounts or []] == [(1000, discount_id)]
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1

    end = subscription["items"].data[0].current_period_end
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 7200})
    second = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(subscription.id).latest_invoice))
    assert (second.billing_reason, second.total) == ("subscription_cycle", 4000)  # month 2 of 2
    end = client.v1.subscriptions.retrieve(subscription.id)["items"].data[0].current_period_end
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 7200})
    third = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(subscription.id).latest_invoice))
    assert (third.total, third.total_discount_amounts) == (5000, [])  # the repeating coupon has ended


def test_once_coupon_and_bad_codes(client: stripe.StripeClient) -> None:
    price, customer = _setup(client)
    once = client.v1.coupons.create({"amount_off": 1500, "currency": "usd"})
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                                   "discounts": [{"coupon": once.id}]})
    first = client.v1.invoices.retrieve(str(subscription.latest_invoice))
    assert (first.total, first.amount_due) == (3500, 3500)
    assert client.v1.subscriptions.retrieve(subscription.id).discounts == []  # used up by its first invoice
    inactive = client.v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": once.id},
                                                 "active": False})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(subscription.id, {"discounts": [{"promotion_code": inactive.id}]})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(subscription.id, {"discounts": [{"coupon": "missing"}]})


def test_one_off_invoice_discounts(client: stripe.StripeClient) -> None:
    _price, customer = _setup(client)
    coupon = client.v1.coupons.create({"percent_off": 10})
    invoice = client.v1.invoices.create({"customer": customer.id})
    client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": 3000,
                                    "currency": "usd"})
    discounted = client.v1.invoices.update(invoice.id, {"discounts": [{"coupon": coupon.id}]})
    assert (discounted.subtotal, discounted.total, discounted.amount_due) == (3000, 2700, 2700)
    client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": 1000,
                                    "currency": "usd"})
    grown = client.v1.invoices.retrieve(invoice.id)
    assert (grown.subtotal, grown.total) == (4000, 3600)
    assert [d.amount for d in grown.total_discount_amounts or []] == [400]
    paid = client.v1.invoices.pay(client.v1.invoices.finalize_invoice(invoice.id).id)
    assert (paid.status, paid.amount_paid) == ("paid", 3600)
