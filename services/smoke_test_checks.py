"""The smoke test's checks, each a step: the configured price fits (before a run), then, once
checkout.session.completed is in, the subscription is active at Stripe with its first invoice
paid, the billing DB and the console's search show it, and a Customer Portal session can be
created. No transaction is held across a Stripe call or the console's own read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.repositories import smoke_tests
from db.session import UnitOfWork
from services.config import Settings
from services.errors import ConsoleError
from services.money import format_money
from services.smoke_test_view import step
from services.stripe_gateway import StripeGateway, StripeGatewayError

CHECK_STEPS = ("subscription_active", "billing_db", "portal_session")


class SmokeTestError(ConsoleError):
    """The smoke test cannot do this now; the message says why and what to do."""


@dataclass(frozen=True)
class PriceCheck:
    price_id: str
    amount: int
    currency: str
    interval: str
    product: str

    @property
    def amount_text(self) -> str:
        return format_money(self.amount, self.currency)


def stripe_id(value: Any) -> str | None:
    """An expandable field's id (the object's `id` when expanded)."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) and value else None


def check_price(settings: Settings, gateway: StripeGateway) -> PriceCheck:
    """The configured price exists in this mode, is active and recurring (Checkout's subscription mode)."""
    price_id = settings.stripe_smoke_test_price
    if not price_id:
        raise SmokeTestError("No smoke-test price is configured: set STRIPE_SMOKE_TEST_PRICE to the price_... id "
                             "of the cheapest recurring price the account sells.")
    try:
        price = gateway.retrieve_price(price_id)
    except StripeGatewayError as error:
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id}: {error.message}") from None
    if bool(price.get("livemode")) != (settings.stripe_mode == "live"):
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id} belongs to the other Stripe mode.")
    if not price.get("active"):
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id} is archived (inactive) at Stripe.")
    recurring = price.get("recurring") or {}
    if not recurring:
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id} is a one-time price; the smoke test buys a "
                             "subscription, so use a recurring price.")
    product = price.get("product")
    name = product.get("name") if isinstance(product, dict) else str(product or "")
    count = int(recurring.get("interval_count") or 1)
    interval = f"every {count} {recurring.get('interval')}s" if count > 1 else f"per {recurring.get('interval')}"
    return PriceCheck(price_id, int(price.get("unit_amount") or 0), str(price.get("currency") or "usd"), interval,
                      name or "")


@dataclass
class CheckRun:
    """What the checks need from the row, read in one short transaction; the checks fill in
    the invoice, the payment and the amount paid."""

    id: int
    customer_id: str | None
    subscription_id: str | None
    currency: str | None
    amount: int | None = None
    invoice_id: str | None = None
    payment_intent_id: str | None = None
    attempt: int = 1


def _payment_intent(invoice: dict[str, Any]) -> str | None:
    for payment in ((invoice.get("payments") or {}).get("data") or []):
        intent = stripe_id((payment.get("payment") or {}).get("payment_intent"))
        if intent:
            return intent
    return None


def check_subscription(run: CheckRun, gateway: StripeGateway) -> dict[str, Any]:
    if not run.subscription_id:
        return step("subscription_active", False, "The completed Checkout Session names no subscription.")
    try:
        subscription = gateway.retrieve_subscription(run.subscription_id)
        invoice_id = stripe_id(subscription.get("latest_invoice"))
        invoice = gateway.retrieve_invoice(invoice_id, expand=["payments"]) if invoice_id else {}
    except StripeGatewayError as error:
        return step("subscription_active", False, error.message, subscription=run.subscription_id)
    run.invoice_id = invoice_id
    run.payment_intent_id = _payment_intent(invoice)
    if invoice:
        run.amount, run.currency = int(invoice.get("amount_paid") or 0), str(invoice.get("currency") or run.currency)
    status = subscription.get("status")
    paid = invoice.get("status") == "paid"
    amount = format_money(run.amount or 0, run.currency or "usd")
    ok = status == "active" and paid and run.payment_intent_id is not None
    detail = f"status {status}; first invoice {invoice_id or '-'} {invoice.get('status') or '-'}, {amount} paid"
    return step("subscription_active", ok, detail, subscription=run.subscription_id, invoice=invoice_id,
                payment_intent=run.payment_intent_id)


def check_billing_db(run: CheckRun, uow: UnitOfWork) -> dict[str, Any]:
    from services.search import search

    with uow:
        stored = smoke_tests.stored_subscription(uow, run.subscription_id)
    if stored is None:
        return step("billing_db", False, "The billing DB has no row for the subscription (is the worker running, "
                                         "and processing not paused?).", subscription=run.subscription_id)
    # What the console shows: its own search (sidebar and Search page) finds the subscription.
    hits = [h for h in search(uow, run.subscription_id or "") if h.kind == "subscription"]
    ok = stored.is_active and stored.status == "active" and bool(hits)
    detail = (f"billing DB: {stored.status}, price {stored.stripe_price_id}; console search: "
              + (hits[0].title if hits else "not found"))
    return step("billing_db", ok, detail, subscription=run.subscription_id, customer=stored.stripe_customer_id)


def check_portal(run: CheckRun, settings: Settings, gateway: StripeGateway) -> dict[str, Any]:
    params: dict[str, Any] = {"customer": run.customer_id}
    if settings.smoke_test_return_url:
        params["return_url"] = settings.smoke_test_return_url
    try:
        portal = gateway.create_portal_session(params, idempotency_key=f"smoke:{run.id}:portal:{run.attempt}")
    except StripeGatewayError as error:
        return step("portal_session", False, error.message, customer=run.customer_id)
    ok = str(portal.get("url") or "").startswith("https://")
    # The URL signs the customer in to their portal, so only its id and configuration are kept.
    return step("portal_session", ok, f"portal URL issued (configuration {portal.get('configuration')})",
                portal_session=portal.get("id"), customer=run.customer_id)


def run_all(run: CheckRun, *, uow: UnitOfWork, settings: Settings, gateway: StripeGateway) -> list[dict[str, Any]]:
    """The three checks in order; the first failure stops them."""
    steps: list[dict[str, Any]] = []
    for check in CHECK_STEPS:
        if check == "subscription_active":
            result = check_subscription(run, gateway)
        elif check == "billing_db":
            result = check_billing_db(run, uow)
        else:
            result = check_portal(run, settings, gateway)
        steps.append(result)
        if not result["passed"]:
            break
    return steps
