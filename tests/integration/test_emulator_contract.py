"""Contract tests: the real stripe SDK (StripeClient) against the emulator, object by
object, asserting the shapes and behaviours of Stripe's API reference."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
import stripe

from emulator.billing_calendar import boundary
from tests.conftest import EmulatorHandle
from tests.integration.conftest import confirmed_payment
from tests.integration.stripe_target import FIXED_IDEMPOTENCY_KEYS, StripeTarget, empty_account


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_contract", files=True)


@pytest.fixture
def catalog(client: stripe.StripeClient, stripe_target: StripeTarget) -> dict[str, Any]:
    # Lookup keys are unique per Stripe account: on a real one a rerun's prices go without them.
    pro_key: Any = {"lookup_key": "pro_monthly"} if stripe_target.is_emulator else {}
    basic_key: Any = {"lookup_key": "basic_monthly"} if stripe_target.is_emulator else {}
    product = client.v1.products.create({"name": "Pro"})
    monthly = client.v1.prices.create({"currency": "usd", "unit_amount": 2900, "product": product.id,
                                       "recurring": {"interval": "month"}, **pro_key})
    basic = client.v1.prices.create({"currency": "usd", "unit_amount": 900, "product_data": {"name": "Basic"},
                                     "recurring": {"interval": "month"}, **basic_key})
    return {"product": product, "pro": monthly, "basic": basic}


def _customer(client: stripe.StripeClient, card: str = "pm_card_visa", clock: str | None = None) -> Any:
    params: dict[str, Any] = {"email": "c@example.io", "name": "Casey", "payment_method": card,
                              "invoice_settings": {"default_payment_method": card}}
    if clock:
        params["test_clock"] = clock
    return client.v1.customers.create(params)


def test_customer_lifecycle(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "a@example.io", "metadata": {"user_id": "u1"}})
    assert customer.object == "customer" and customer.id.startswith("cus_")
    assert customer.metadata["user_id"] == "u1" and customer.livemode is False
    updated = client.v1.customers.update(customer.id, {"name": "Ann", "metadata": {"user_id": ""}})
    assert updated.name == "Ann" and "user_id" not in updated.metadata  # "" unsets a metadata key
    assert client.v1.customers.retrieve(customer.id).name == "Ann"
    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve(customer.id)
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"


@pytest.mark.emulator_only(
    reason="lookup keys are unique per account, so a second run's prices would be refused on Stripe")
def test_price_shapes_and_filters(client: stripe.StripeClient, catalog: dict[str, Any]) -> None:
    price = client.v1.prices.retrieve(catalog["pro"].id, {"expand": ["product"]})
    assert price.recurring.interval == "month" and price.type == "recurring" and price.unit_amount == 2900
    assert price.product.name == "Pro"  # expanded
    found = client.v1.prices.list({"lookup_keys": ["basic_monthly"]})
    assert [p.id for p in found.data] == [catalog["basic"].id]


def test_declined_card_cannot_attach(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "d@example.io"})
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", {"customer": customer.id})
    assert caught.value.http_status == 402 and caught.value.code == "card_declined"


def test_subscription_basil_shapes(client: stripe.StripeClient, catalog: dict[str, Any]) -> None:
    customer = _customer(client)
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": catalog["pro"].id}]})
    assert subscription.status == "active"
    item = subscription["items"].data[0]
    # Anchor-day months: the period ends on the same day (and time) next month, not 30 days later.
    assert item.current_period_end == boundary(item.current_period_start, "month", 1, 1)
    assert "current_period_end" not in subscription  # basil: the period is on the item
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    assert invoice.parent.subscription_details.subscription == subscription.id
    assert invoice.status == "paid" and invoice.amount_paid == 2900
    assert invoice.lines.data[0].pricing.price_details.price == catalog["pro"].id


def test_upgrade_with_always_invoice_charges_the_proration(client: stripe.StripeClient,
                                                           catalog: dict[str, Any]) -> None:
    customer = _customer(client)
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": catalog["basic"].id}]})
    item = subscription["items"].data[0]
    preview = client.v1.invoices.create_preview({
        "subscription": subscription.id,
        "subscription_details": {"items": [{"id": item.id, "price": catalog["pro"].id}],
                                 "proration_behavior": "always_invoice"},
    })
    prorations = [line for line in preview.lines.data if line.parent.subscription_item_details.proration]
    assert len(prorations) == 2 and preview.amount_due > 0
    updated = client.v1.subscriptions.update(subscription.id, {
        "items": [{"id": item.id, "price": catalog["pro"].id}], "proration_behavior": "always_invoice"})
    assert updated["items"].data[0].price.id == catalog["pro"].id
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.billing_reason == "subscription_update" and invoice.status == "paid"
    assert invoice.amount_paid == preview.amount_due


@pytest.mark.emulator_only(reason=empty_account("customer.subscription.deleted events"))
def test_scheduled_downgrade_and_cancel_at_period_end_on_a_test_clock(client: stripe.StripeClient,
                                                                      catalog: dict[str, Any]) -> None:
    start = 1_800_000_000
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start})
    customer = _customer(client, clock=clock.id)
    kept = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": catalog["pro"].id}]})
    ending = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": catalog["pro"].id}]})
    end = kept["items"].data[0].current_period_end
    for subscription in (kept, ending):
        client.v1.subscriptions.update(subscription.id, {"cancel_at_period_end": True,
                                                         "metadata": {"pending_plan": "basic"}})
    # Reconciliation's switch just before the period end: price change, cancel unset, metadata cleared.
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end - 600})
    switched = client.v1.subscriptions.update(kept.id, {
        "items": [{"id": kept["items"].data[0].id, "price": catalog["basic"].id}], "proration_behavior": "none",
        "cancel_at_period_end": False, "metadata": {"pending_plan": ""}})
    assert switched.cancel_at_period_end is False and "pending_plan" not in switched.metadata
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 3600})
    renewed = client.v1.subscriptions.retrieve(kept.id)
    assert renewed.status == "active" and renewed["items"].data[0].current_period_start == end
    assert client.v1.invoices.retrieve(renewed.latest_invoice).amount_paid == 900  # the lower price
    assert client.v1.subscriptions.retrieve(ending.id).status == "canceled"
    types = [e.type for e in client.v1.events.list({"type": "customer.subscription.deleted"}).data]
    assert types == ["customer.subscription.deleted"]


@pytest.mark.emulator_only(reason=empty_account("invoice.payment_failed events"))
def test_failing_card_enters_dunning_and_retries(client: stripe.StripeClient, catalog: dict[str, Any]) -> None:
    start = 1_800_000_000
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start})
    customer = _customer(client, clock=clock.id)
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": catalog["pro"].id}]})
    client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer.id})
    failing = client.v1.payment_methods.list({"customer": customer.id}).data[0]
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": failing.id}})
    end = subscription["items"].data[0].current_period_end
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 60})
    # The renewal invoice is a draft for about an hour; nothing is charged yet.
    draft = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(subscription.id).latest_invoice)
    assert draft.status == "draft" and draft.automatically_finalizes_at == end + 3600
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 3600 + 60})
    assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 4 * 86400})
    failures = client.v1.events.list({"type": "invoice.payment_failed"}).data
    assert len(failures) == 2  # the renewal and the +3 day retry
    assert failures[0].data.object.attempt_count == 2
    recovered = client.v1.invoices.pay(failures[0].data.object.id, {"payment_method": "pm_card_visa"})
    assert recovered.status == "paid"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"


@pytest.mark.emulator_only(reason="completes 3-D Secure through /_emulator/ (a browser step on Stripe)")
def test_sca_card_requires_action_then_completes(client: stripe.StripeClient, emulator: EmulatorHandle,
                                                 catalog: dict[str, Any]) -> None:
    customer = _customer(client, card="pm_card_authenticationRequired")
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": catalog["pro"].id}]})
    assert subscription.status == "incomplete"
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    events = client.v1.events.list({"type": "invoice.payment_action_required"}).data
    assert [e.data.object.id for e in events] == [invoice.id]
    intent_id = invoice.payments.data[0].payment.payment_intent
    assert client.v1.payment_intents.retrieve(intent_id).status == "requires_action"
    emulator.admin(f"payment_intents/{intent_id}/authenticate")
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"
    charge = client.v1.charges.retrieve(client.v1.payment_intents.retrieve(intent_id).latest_charge)
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"


def _pay(client: stripe.StripeClient, card: str, amount: int = 5000) -> Any:
    return confirmed_payment(client, card, amount)


def test_refunds_full_partial_and_errors(client: stripe.StripeClient) -> None:
    intent = _pay(client, "pm_card_visa", 5000)
    partial = client.v1.refunds.create({"charge": intent.latest_charge, "amount": 2000})
    assert partial.status == "succeeded" and partial.amount == 2000
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create({"charge": intent.latest_charge, "amount": 3001})
    assert too_much.value.code == "amount_too_large"
    client.v1.refunds.create({"charge": intent.latest_charge})
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert charge.refunded is True and charge.amount_refunded == 5000
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create({"charge": intent.latest_charge})
    assert again.value.code == "charge_already_refunded"
    disputed = _pay(client, "pm_card_createDispute")
    with pytest.raises(stripe.InvalidRequestError) as on_dispute:
        client.v1.refunds.create({"charge": disputed.latest_charge})
    assert on_dispute.value.code == "charge_disputed"


def test_efw_becomes_unactionable_once_refunded(client: stripe.StripeClient) -> None:
    intent = _pay(client, "pm_card_createIssuerFraudRecord")
    efw = client.v1.radar.early_fraud_warnings.list({"charge": intent.latest_charge}).data[0]
    assert efw.object == "radar.early_fraud_warning" and efw.actionable is True
    assert efw.fraud_type == "made_with_stolen_card"
    client.v1.refunds.create({"charge": intent.latest_charge, "reason": "fraudulent"})
    assert client.v1.radar.early_fraud_warnings.retrieve(efw.id).actionable is False
    updates = client.v1.events.list({"type": "radar.early_fraud_warning.updated"}).data
    assert updates[0].data.previous_attributes.actionable is True


def _upload(client: stripe.StripeClient, content: bytes, name: str) -> Any:
    upload = io.BytesIO(content)
    upload.name = name
    return client.v1.files.create({"file": upload, "purpose": "dispute_evidence"})


def test_files_type_and_size_limits(client: stripe.StripeClient) -> None:
    pdf = _upload(client, b"%PDF-1.7\n" + b"0" * 1000, "receipt.pdf")
    assert pdf.object == "file" and pdf.type == "pdf" and pdf.purpose == "dispute_evidence"
    png = _upload(client, b"\x89PNG\r\n\x1a\n" + b"0" * 100, "shot.png")
    assert png.type == "png"
    with pytest.raises(stripe.InvalidRequestError):
        _upload(client, b"MZ\x90\x00 not a pdf", "malware.pdf")  # the name lies; the bytes decide
    with pytest.raises(stripe.InvalidRequestError):
        _upload(client, b"%PDF-1.7\n" + b"0" * (6 * 1024 * 1024), "big.pdf")


def test_dispute_draft_submit_and_outcome(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    intent = _pay(client, "pm_card_createDispute")
    dispute = client.v1.disputes.list({"payment_intent": intent.id}).data[0]
    assert dispute.status == "needs_response" and dispute.reason == "fraudulent"
    assert dispute.evidence_details.due_by > time.time()
    receipt = _upload(client, b"%PDF-1.4 receipt", "receipt.pdf")
    staged = client.v1.disputes.update(dispute.id, {"evidence": {"receipt": receipt.id,
                                                                 "uncategorized_text": "winning_evidence"},
                                                    "submit": False})
    assert staged.status == "needs_response" and staged.evidence_details.submission_count == 0
    assert staged.evidence.receipt == receipt.id
    submitted = client.v1.disputes.update(dispute.id, {"submit": True})
    assert submitted.status == "under_review" and submitted.evidence_details.submission_count == 1
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "more"}})
    deadline = time.monotonic() + 5
    while client.v1.disputes.retrieve(dispute.id).status != "won" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.v1.disputes.retrieve(dispute.id).status == "won"
    closed = client.v1.events.list({"type": "charge.dispute.closed"}).data
    assert closed[0].data.object.status == "won"


@pytest.mark.emulator_only(reason="moves a dispute's due_by into the past through /_emulator/")
def test_losing_evidence_and_close_and_past_due(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    accepted = client.v1.disputes.list({"payment_intent": _pay(client, "pm_card_createDispute").id}).data[0]
    closed = client.v1.disputes.close(accepted.id)
    assert closed.status == "lost"
    overdue = client.v1.disputes.list({"payment_intent": _pay(client, "pm_card_createDispute").id}).data[0]
    emulator.admin(f"disputes/{overdue.id}/set", {"due_by": int(time.time()) - 60})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.disputes.update(overdue.id, {"evidence": {"uncategorized_text": "late"}, "submit": True})
    assert caught.value.code == "dispute_past_due"
    too_long = client.v1.disputes.list({"payment_intent": _pay(client, "pm_card_createDispute").id}).data[0]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.update(too_long.id, {"evidence": {"uncategorized_text": "x" * 150_001}, "submit": False})


@pytest.mark.emulator_only(reason="completes Checkout through /_emulator/ (a browser step on Stripe)")
def test_checkout_completion_and_portal_configuration(client: stripe.StripeClient, emulator: EmulatorHandle,
                                                      catalog: dict[str, Any]) -> None:
    session = client.v1.checkout.sessions.create({"mode": "subscription", "customer_email": "new@example.io",
                                                  "line_items": [{"price": catalog["pro"].id, "quantity": 1}],
                                                  "success_url": "https://example.io/ok"})
    assert session.status == "open" and session.url.startswith("https://checkout.stripe.com/")
    done = emulator.admin(f"checkout/sessions/{session.id}/complete", {"payment_method": "pm_card_visa"})
    assert done["status"] == "complete" and done["subscription"].startswith("sub_")
    assert client.v1.subscriptions.retrieve(done["subscription"]).status == "active"
    assert client.v1.events.list({"type": "checkout.session.completed"}).data[0].data.object.id == session.id
    configuration = client.v1.billing_portal.configurations.create({"features": {
        "subscription_update": {"enabled": True, "default_allowed_updates": ["price"],
                                "products": [{"product": catalog["product"].id, "prices": [catalog["pro"].id]}]},
        "subscription_cancel": {"enabled": True, "mode": "at_period_end"}}})
    listed = client.v1.billing_portal.configurations.list().data
    assert [c.id for c in listed] == [configuration.id]
    assert listed[0].features.subscription_update.enabled is True


@pytest.mark.emulator_only(reason=empty_account("customers"))
def test_pagination_over_250_objects_and_ending_before(client: stripe.StripeClient) -> None:
    ids = [client.v1.customers.create({"email": f"u{i}@example.io"}).id for i in range(260)]
    seen = [c.id for c in client.v1.customers.list({"limit": 100}).auto_paging_iter()]
    assert len(seen) == 260 and set(seen) == set(ids) and seen[0] == ids[-1]  # newest first
    page = client.v1.customers.list({"limit": 100})
    assert page.has_more is True and page.url == "/v1/customers"
    before = client.v1.customers.list({"limit": 5, "ending_before": page.data[10].id})
    assert [c.id for c in before.data] == [c.id for c in page.data[5:10]]


def test_expand_nested(client: stripe.StripeClient) -> None:
    intent = _pay(client, "pm_card_createDispute")
    disputes = client.v1.disputes.list({"payment_intent": intent.id, "expand": ["data.charge"]})
    assert disputes.data[0].charge.object == "charge"
    charge = client.v1.charges.retrieve(intent.latest_charge, {"expand": ["customer", "payment_intent"]})
    assert charge.customer.object == "customer" and charge.payment_intent.object == "payment_intent"


@pytest.mark.emulator_only(reason=FIXED_IDEMPOTENCY_KEYS)
def test_idempotent_replay_mismatch_and_concurrency(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    first = client.v1.customers.create({"email": "same@example.io"}, {"idempotency_key": "cust-1"})
    replay = client.v1.customers.create({"email": "same@example.io"}, {"idempotency_key": "cust-1"})
    assert replay.id == first.id
    assert replay.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.customers.create({"email": "other@example.io"}, {"idempotency_key": "cust-1"})
    assert caught.value.http_status == 400
    intent = _pay(client, "pm_card_visa", 9000)
    results: list[str] = []

    def refund() -> None:
        results.append(client.v1.refunds.create({"charge": intent.latest_charge},
                                                {"idempotency_key": "refund:efw:concurrent"}).id)

    threads = [threading.Thread(target=refund) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 12
    assert len(client.v1.refunds.list({"charge": intent.latest_charge}).data) == 1


@pytest.mark.emulator_only(reason=empty_account("charge and dispute events"))
def test_events_filters(client: stripe.StripeClient) -> None:
    _pay(client, "pm_card_createDispute")
    all_dispute = client.v1.events.list({"type": "charge.dispute.*"}).data
    assert {e.type for e in all_dispute} == {"charge.dispute.created", "charge.dispute.funds_withdrawn"}
    both = client.v1.events.list({"types": ["charge.succeeded", "charge.dispute.created"]}).data
    assert {e.type for e in both} == {"charge.succeeded", "charge.dispute.created"}
    event = client.v1.events.retrieve(both[0].id)
    assert event.api_version == "2026-10-28.endive" and event.livemode is False
    future = client.v1.events.list({"created": {"gte": int(time.time()) + 3600}}).data
    assert future == []


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda c: c.v1.customers.create({"not_a_param": "x"}), 400, "parameter_unknown"),
        (lambda c: c.v1.prices.create({"unit_amount": 100}), 400, "parameter_missing"),
        (lambda c: c.v1.prices.create({"currency": "usd", "unit_amount": "ten", "product_data": {"name": "x"}}),
         400, "parameter_invalid_integer"),
        (lambda c: c.v1.subscriptions.retrieve("sub_missing"), 404, "resource_missing"),
        (lambda c: c.v1.customers.list({"limit": 0}), 400, "parameter_invalid_integer"),
        (lambda c: c.v1.customers.list({"limit": 101}), 400, "parameter_invalid_integer"),
        (lambda c: c.v1.refunds.create({}), 400, "parameter_missing"),
    ],
)
def test_bad_requests_get_stripe_shaped_errors(client: stripe.StripeClient, call: Any, status: int,
                                               code: str) -> None:
    with pytest.raises(stripe.StripeError) as caught:
        call(client)
    assert caught.value.http_status == status
    assert caught.value.code == code
    assert caught.value.json_body["error"]["type"] == "invalid_request_error"
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


@pytest.mark.emulator_only(reason="builds its own clients with made-up keys against the emulator's address")
def test_missing_or_wrong_key_is_401(emulator: EmulatorHandle) -> None:
    for key in ("pk_test_publishable", "nonsense"):
        bad = stripe.StripeClient(key, base_addresses={"api": emulator.base_url}, max_network_retries=0)
        with pytest.raises(stripe.AuthenticationError) as caught:
            bad.v1.customers.list()
        assert caught.value.http_status == 401


@pytest.mark.emulator_only(reason="lowers the emulator's rate limit through /_emulator/rate_limit")
def test_rate_limit_answers_429(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    emulator.admin("rate_limit", {"per_second": 5})
    statuses = []
    for _ in range(15):
        try:
            client.v1.balance.retrieve()
            statuses.append(200)
        except stripe.RateLimitError as error:
            statuses.append(error.http_status)
    assert 429 in statuses and statuses[0] == 200


@pytest.mark.emulator_only(reason="reads the emulator's request log and injects 500s and latency through /_emulator/")
def test_request_log_and_fault_injection(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    emulator.clear_requests()
    client.v1.customers.create({"email": "x@example.io"}, {"idempotency_key": "log-1"})
    log = emulator.requests()
    assert [(r["method"], r["path"], r["idempotency_key"]) for r in log] == [("POST", "/v1/customers", "log-1")]
    emulator.admin("faults", {"rate_500": 1.0})
    with pytest.raises(stripe.APIError) as caught:
        client.v1.customers.list()
    assert caught.value.http_status == 500
    emulator.admin("faults", {"rate_500": 0.0, "latency_ms": 50})
    started = time.monotonic()
    client.v1.customers.list()
    assert time.monotonic() - started >= 0.05


@pytest.mark.emulator_only(reason="seeds a month of data through /_emulator/seed")
def test_seed_builds_a_realistic_month(emulator: EmulatorHandle, client: stripe.StripeClient) -> None:
    seeded = emulator.admin("seed", {"customers": 120, "seed": 3})
    assert set(seeded["prices"]) == {"basic", "pro", "business"}
    assert set(seeded["prices"]["basic"]) == {"monthly", "yearly"}
    counts = seeded["counts"]
    # 120 customers plus one long-standing customer whose dispute qualifies for Visa CE 3.0.
    assert counts["customers"] == 121 and counts["disputes"] >= 12 and counts["efws"] >= 10
    assert counts["ce3_eligible_disputes"] == 1
    all_disputes = list(client.v1.disputes.list({"limit": 100}).auto_paging_iter())
    ce3 = [d for d in all_disputes if "visa_compelling_evidence_3" in d.enhanced_eligibility_types]
    assert len(ce3) == 1 and ce3[0].network_reason_code == "10.4" and ce3[0].status == "needs_response"
    statuses = {d.status for d in all_disputes}
    assert {"needs_response", "warning_needs_response", "under_review", "won", "lost"} <= statuses
    soon = [s for s in client.v1.subscriptions.list({"limit": 100}).auto_paging_iter()
            if "pending_plan" in s.metadata and s.cancel_at_period_end
            and s["items"].data[0].current_period_end - time.time() < 900]
    assert soon, "some scheduled downgrades fall inside the 15-minute reconcile lookahead"
    oldest = min(e.created for e in client.v1.events.list({"limit": 100}).auto_paging_iter())
    assert time.time() - oldest > 20 * 86400  # history spread over the month
    # A card-testing burst in the last hour: small guest payments declined by reason, one charge.failed each.
    assert counts["card_testing_declines"] == 24
    recent = list(client.v1.charges.list({"limit": 100, "created": {"gte": int(time.time()) - 3600}})
                  .auto_paging_iter())
    burst = [c for c in recent if c.status == "failed" and c.amount <= 100 and c.customer is None]
    assert len(burst) == 24 and {c.failure_code for c in burst} == {"card_declined", "incorrect_cvc", "expired_card"}
