"""The webhook receiver and event pipeline against the emulator, on SQLite and PostgreSQL:
signatures, store-once, idempotent and order-safe processing, crashes, replay, sync, prune."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
import uvicorn
from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from db.models import AuditLog, Dispute, FraudWarning, Invoice, MetricPoint, StripeEvent, UserSubscription
from services import event_handlers, event_processing, metric_points, webhooks
from services.sync import run_sync
from tests.conftest import ADMIN_EMAIL, TEST_WEBHOOK_SECRETS, EmulatorHandle
from webhooks.app import create_app

PRIMARY, ROTATED = TEST_WEBHOOK_SECRETS


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def event_body(event_id: str = "evt_test_1", event_type: str = "invoice.paid", **obj: Any) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": event_type, "created": int(time.time()),
                       "api_version": "2026-10-28.endive", "livemode": False,
                       "data": {"object": {"id": "in_1", "object": "invoice", **obj}}}).encode()


def rows(runtime: Any, model: Any) -> list[Any]:
    with runtime.uow() as uow:
        return list(uow.session.execute(select(model)).scalars())


def count(runtime: Any, model: Any) -> int:
    with runtime.uow() as uow:
        return int(uow.session.execute(select(func.count()).select_from(model)).scalar() or 0)


# --- signature verification at the receiver ------------------------------------------------
@pytest.fixture
def client(runtime: Any) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/billing/webhook", "/api/subscription/webhook"])
@pytest.mark.parametrize("secret", [PRIMARY, ROTATED])
def test_each_configured_secret_verifies(client: TestClient, runtime: Any, path: str, secret: str) -> None:
    body = event_body("evt_rot", "product.created")
    response = client.post(path, content=body, headers={"Stripe-Signature": sign(body, secret)})
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"  # verified, but not in the allow-list
    assert [(r.id, r.status) for r in rows(runtime, StripeEvent)] == [("evt_rot", "ignored")]


def test_any_v1_may_match(client: TestClient, runtime: Any) -> None:
    body = event_body("evt_multi", "product.created")
    good = sign(body, PRIMARY)
    header = good.replace("v1=", "v1=" + "0" * 64 + ",v1=")
    assert client.post("/billing/webhook", content=body, headers={"Stripe-Signature": header}).status_code == 200


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda b: ({}, b), "missing Stripe-Signature header"),
        (lambda b: ({"Stripe-Signature": "garbage"}, b), "malformed Stripe-Signature header"),
        (lambda b: ({"Stripe-Signature": sign(b, PRIMARY)}, b.replace(b"in_1", b"in_2")), "no signature matches"),
        (lambda b: ({"Stripe-Signature": sign(b, PRIMARY)[:-4] + "beef"}, b), "no signature matches"),
        (lambda b: ({"Stripe-Signature": sign(b, "whsec_unknown_secret")}, b), "no signature matches"),
        (lambda b: ({"Stripe-Signature": sign(b, PRIMARY, int(time.time()) - 301)}, b),
         "timestamp outside the tolerance"),
        (lambda b: ({"Stripe-Signature": sign(b"not json", PRIMARY)}, b"not json"), "body is not JSON"),
        (lambda b: ({"Stripe-Signature": sign(b"[1]", PRIMARY)}, b"[1]"), "body is not a Stripe event"),
        (lambda b: ({"Stripe-Signature": sign(b"x" * (1024 * 1024 + 1), PRIMARY)}, b"x" * (1024 * 1024 + 1)),
         "body too large"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_and_nothing_stored(client: TestClient, runtime: Any, make: Any,
                                                                   reason: str) -> None:
    headers, body = make(event_body("evt_bad"))
    response = client.post("/billing/webhook", content=body, headers=headers)
    assert response.status_code == (413 if reason == "body too large" else 400)
    assert response.json() == {"error": reason}
    assert count(runtime, StripeEvent) == 0


def test_invalid_signatures_are_counted(client: TestClient, runtime: Any) -> None:
    body = event_body("evt_forged")
    for _ in range(3):
        client.post("/billing/webhook", content=body, headers={"Stripe-Signature": sign(body, "whsec_nope")})
    client.app.state.rejections.flush()  # counted in memory, written in batches
    with runtime.uow() as uow:
        n = uow.session.execute(select(func.sum(MetricPoint.value)).where(
            MetricPoint.name == metric_points.WEBHOOK_INVALID_SIGNATURE)).scalar()
    assert n == 3
    assert "stripe_webhook_deliveries_total{outcome=\"invalid_signature\"}" in client.get("/metrics").text


def test_no_secret_configured_refuses_everything(runtime_factory: Any) -> None:
    runtime = runtime_factory(STRIPE_WEBHOOK_SECRETS=None)
    with TestClient(create_app(runtime)) as test_client:
        body = event_body("evt_nosecret")
        response = test_client.post("/billing/webhook", content=body, headers={"Stripe-Signature": sign(body, PRIMARY)})
    assert response.status_code == 503
    assert count(runtime, StripeEvent) == 0


def test_healthz_reports_db_and_last_event_age(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["ok"] is True and health["last_event_age_seconds"] is None
    body = event_body("evt_h", "product.created")
    client.post("/billing/webhook", content=body, headers={"Stripe-Signature": sign(body, PRIMARY)})
    assert client.get("/healthz").json()["last_event_age_seconds"] < 60


# --- store once, process once ------------------------------------------------------------------
def _failed_invoice_event(event_id: str = "evt_fail_1") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": "invoice.payment_failed", "created": int(time.time()),
            "livemode": False, "data": {"object": {
                "id": "in_dunning", "object": "invoice", "customer": None, "status": "open", "amount_due": 2900,
                "currency": "usd", "attempt_count": 1, "created": int(time.time()),
                "parent": {"subscription_details": {"subscription": "sub_x"}}, "lines": {"data": []}}}}


def test_32_concurrent_deliveries_store_one_row_and_apply_once(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url, WEBHOOK_PROCESS_INLINE="true")
    event = _failed_invoice_event()
    body = json.dumps(event).encode()
    outcomes: list[str] = []
    barrier = threading.Barrier(32)

    def deliver() -> None:
        verified = webhooks.verify_signature(body, sign(body, PRIMARY), runtime.settings.webhook_secret_values)
        barrier.wait()
        outcomes.append(webhooks.ingest_event(runtime, verified))

    threads = [threading.Thread(target=deliver) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate"] * 31 + ["stored"]
    stored = rows(runtime, StripeEvent)
    assert len(stored) == 1 and stored[0].status == "processed" and stored[0].duplicate_deliveries == 31
    with runtime.uow() as uow:
        failed = uow.session.execute(select(func.count()).where(
            MetricPoint.name == metric_points.INVOICE_FAILED)).scalar()
    assert failed == 1
    assert rows(runtime, Invoice)[0].payment_failed_at is not None


def test_a_raising_handler_leaves_the_event_retryable(runtime_factory: Any, database_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    calls = {"n": 0}
    original = event_handlers.HANDLERS["invoice.payment_failed"]

    def flaky(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database hiccup for ops@example.com with sk_test_CANARYsecret")
        original(uow, event, rt, False)

    monkeypatch.setitem(event_handlers.HANDLERS, "invoice.payment_failed", flaky)
    assert webhooks.ingest_event(runtime, _failed_invoice_event(), process=True) == "stored"
    row = rows(runtime, StripeEvent)[0]
    assert (row.status, row.attempts) == ("failed", 1)
    assert "hiccup" in (row.last_error or "") and "CANARY" not in (row.last_error or "")
    assert "ops@example.com" not in (row.last_error or "")
    assert count(runtime, Invoice) == 0  # the failed attempt changed nothing
    assert webhooks.process_pending(runtime) == 0  # backoff: not due yet
    from db.models.base import utcnow

    assert webhooks.process_pending(runtime, now=utcnow() + event_processing._backoff(1) * 2) == 1
    row = rows(runtime, StripeEvent)[0]
    assert (row.status, row.attempts, row.last_error) == ("processed", 2, None)
    assert count(runtime, Invoice) == 1


def test_crash_before_commit_never_answers_2xx(runtime: Any) -> None:
    import sqlite3

    from sqlalchemy import event as sa_event

    # The receiver's writer runs its batch on the pool's sqlite3 connection: SQLite itself refuses
    # the COMMIT (an authorizer denying it) while `crashing` is set, after the rows were inserted.
    crashing = [True]

    def refuse_commit(action: int, arg1: str | None, *_args: Any) -> int:
        if crashing[0] and action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def on_checkout(dbapi_connection: Any, *_args: Any) -> None:
        dbapi_connection.set_authorizer(refuse_commit)

    assert runtime.engine.dialect.name == "sqlite"
    sa_event.listen(runtime.engine.pool, "checkout", on_checkout)
    body = json.dumps(_failed_invoice_event("evt_crash")).encode()
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
            crashed = test_client.post("/billing/webhook", content=body,
                                       headers={"Stripe-Signature": sign(body, PRIMARY)})
            crashing[0] = False
            assert crashed.status_code == 500
            assert count(runtime, StripeEvent) == 0
            retried = test_client.post("/billing/webhook", content=body,
                                       headers={"Stripe-Signature": sign(body, PRIMARY)})
    finally:
        sa_event.remove(runtime.engine.pool, "checkout", on_checkout)
    assert retried.status_code == 200 and retried.json()["status"] == "stored"
    assert [r.status for r in rows(runtime, StripeEvent)] == ["pending"]  # stored; the worker processes it
    assert webhooks.process_pending(runtime) == 1


def test_a_worker_that_died_mid_processing_is_taken_over(runtime: Any) -> None:
    from db.models.base import utcnow

    webhooks.ingest_event(runtime, _failed_invoice_event("evt_orphan"), process=False)
    assert event_processing._claim(runtime, "evt_orphan", utcnow())  # claimed, then the worker vanished
    assert webhooks.process_pending(runtime) == 0
    assert webhooks.process_pending(runtime, now=utcnow() + event_processing.PROCESSING_LEASE * 2) == 1
    assert rows(runtime, StripeEvent)[0].status == "processed"


# --- real deliveries from the emulator -------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_receiver(runtime_factory: Any, emulator: EmulatorHandle) -> Iterator[Any]:
    """The receiver under uvicorn, registered with the emulator, processing inline."""
    port = _free_port()
    client = stripe.StripeClient("sk_test_setup", base_addresses={"api": emulator.base_url}, max_network_retries=0)
    endpoint = client.v1.webhook_endpoints.create({"url": f"http://127.0.0.1:{port}/billing/webhook",
                                                   "enabled_events": ["*"]})
    seeded = emulator.admin("seed", {"customers": 0, "seed": 1})  # catalogue only
    runtime = runtime_factory(STRIPE_WEBHOOK_SECRETS=f"{endpoint.secret},{ROTATED}", WEBHOOK_PROCESS_INLINE="true",
                              STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    runtime.prices = seeded["prices"]
    runtime.client = client
    yield runtime
    server.should_exit = True
    thread.join(timeout=10)


def _settle(emulator: EmulatorHandle, runtime: Any) -> None:
    for _ in range(50):
        emulator.flush_webhooks()
        with runtime.uow() as uow:
            busy = uow.session.execute(select(func.count()).where(StripeEvent.status.in_(("pending", "processing"))
                                                                  )).scalar()
        if not busy:
            return
        time.sleep(0.1)


def test_signed_deliveries_from_the_emulator_build_the_billing_db(live_receiver: Any,
                                                                  emulator: EmulatorHandle) -> None:
    client = live_receiver.client
    customer = client.v1.customers.create({"email": "live@example.io", "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    subscription = client.v1.subscriptions.create({"customer": customer.id,
                                                   "items": [{"price": live_receiver.prices["pro"]["monthly"]}]})
    client.v1.payment_intents.create({"amount": 4200, "currency": "usd", "customer": customer.id,
                                      "payment_method": "pm_card_createDispute", "confirm": True})
    _settle(emulator, live_receiver)
    stored = rows(live_receiver, StripeEvent)
    assert stored and all(r.status in ("processed", "ignored") for r in stored)
    sub = rows(live_receiver, UserSubscription)[0]
    assert (sub.stripe_subscription_id, sub.plan, sub.status) == (subscription.id, "pro", "active")
    dispute = rows(live_receiver, Dispute)[0]
    assert dispute.customer_email == "live@example.io" and dispute.status == "needs_response"


# --- order, duplicates and late events ---------------------------------------------------------------
def _scenario(client: stripe.StripeClient, emulator: EmulatorHandle, prices: dict[str, Any]) -> None:
    """A month in miniature: signup, upgrade, downgrade scheduled, dunning and recovery, SCA, a dispute,
    an EFW refunded."""
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    customer = client.v1.customers.create({"email": "order@example.io", "test_clock": clock.id,
                                           "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": prices["basic"]["monthly"]}]})
    item = sub["items"].data[0]
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item.id, "price": prices["pro"]["monthly"]}],
                                            "proration_behavior": "always_invoice"})
    client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True, "metadata": {"pending_plan": "basic"}})
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": failing.id}})
    client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": False, "metadata": {"pending_plan": ""}})
    # The renewal is a draft for about an hour, then finalized and charged (and declined).
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": item.current_period_end + 3600 + 60})
    invoice = client.v1.invoices.list({"customer": customer.id, "status": "open"}).data[0]
    client.v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"})
    sca = client.v1.customers.create({"email": "sca@example.io", "payment_method": "pm_card_authenticationRequired"})
    sca_sub = client.v1.subscriptions.create({"customer": sca.id, "items": [{"price": prices["basic"]["monthly"]}]})
    sca_invoice = client.v1.invoices.retrieve(sca_sub.latest_invoice)
    emulator.admin(f"payment_intents/{sca_invoice.payments.data[0].payment.payment_intent}/authenticate")
    buyer = client.v1.customers.create({"email": "buyer@example.io"})
    client.v1.payment_intents.create({"amount": 5000, "currency": "usd", "customer": buyer.id,
                                      "payment_method": "pm_card_createDispute", "confirm": True})
    efw = client.v1.payment_intents.create({"amount": 7000, "currency": "usd", "customer": buyer.id,
                                            "payment_method": "pm_card_createIssuerFraudRecord", "confirm": True})
    client.v1.refunds.create({"charge": efw.latest_charge, "reason": "fraudulent"})


CANONICAL = {
    "customers": "id, email, name",
    "user_subscriptions": "stripe_subscription_id, status, plan, interval, stripe_price_id, cancel_at_period_end, "
                          "pending_plan, current_period_end",
    "invoices": "id, status, amount_due, amount_paid, attempt_count, plan, payment_failed_at, action_required_at, "
                "paid_at, recovered_at, recovery_method",
    "charges": "id, amount, amount_refunded, refunded, disputed, status",
    "refunds": "id, charge_id, amount",
    "disputes": "id, status, amount, customer_email, due_by",
    "fraud_warnings": "id, charge_id, actionable, status, amount",
    "metric_points": "name, at, value, dedupe_key",
    "stripe_events": "id, type, status",
}


def canonical_dump(runtime: Any) -> dict[str, list[tuple[Any, ...]]]:
    dump = {}
    with runtime.engine.connect() as conn:
        for table, columns in CANONICAL.items():
            # Delivery metrics are stamped when received; the state-derived ones must match exactly.
            where = " where dedupe_key is not null and name not like 'stripe.webhook.%'" \
                if table == "metric_points" else ""
            dump[table] = sorted(tuple(str(v) for v in row) for row in conn.execute(
                text(f"select {columns} from {table}{where}")))  # noqa: S608 (fixed test SQL)
    return dump


def test_shuffled_duplicated_late_stream_ends_in_the_same_state(runtime_factory: Any, emulator: EmulatorHandle,
                                                                 tmp_path: Any) -> None:
    seeded = emulator.admin("seed", {"customers": 0, "seed": 1})
    client = stripe.StripeClient("sk_test_order", base_addresses={"api": emulator.base_url}, max_network_retries=0)
    _scenario(client, emulator, seeded["prices"])
    events = sorted(runtime_factory().gateway.list_events(), key=lambda e: (e["created"], e["id"]))
    mapping = json.dumps(seeded["prices"])
    in_order = runtime_factory(DATABASE_URL=f"sqlite:///{tmp_path}/in_order.db", STRIPE_PLAN_PRICE_MAPPING_TEST=mapping)
    for event in events:
        webhooks.ingest_event(in_order, event, process=True)
    chaotic = runtime_factory(DATABASE_URL=f"sqlite:///{tmp_path}/chaos.db", STRIPE_PLAN_PRICE_MAPPING_TEST=mapping)
    stream = events + random.Random(5).sample(events, len(events) // 2)  # duplicates
    random.Random(9).shuffle(stream)  # and every kind of lateness
    for event in stream:
        webhooks.ingest_event(chaotic, event, process=True)
    expected, actual = canonical_dump(in_order), canonical_dump(chaotic)
    assert expected["invoices"] and any(r[-1] == "card_update" for r in expected["invoices"])
    assert any(r[-1] == "customer_action" for r in expected["invoices"])
    for table in CANONICAL:
        assert actual[table] == expected[table], table


def test_replaying_a_processed_event_changes_nothing_and_is_audited(runtime_factory: Any,
                                                                    emulator: EmulatorHandle) -> None:
    seeded = emulator.admin("seed", {"customers": 8, "seed": 4})
    runtime = runtime_factory(STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]))
    run_sync(runtime, since=None, days=30)
    before = canonical_dump(runtime)
    processed = [r for r in rows(runtime, StripeEvent) if r.status == "processed"]
    for row in processed[:10]:
        assert webhooks.replay_event(row.id, actor=ADMIN_EMAIL, settings=runtime.settings, uow=runtime.uow(),
                                     runtime=runtime)
    assert canonical_dump(runtime) == before
    audits = [r for r in rows(runtime, AuditLog) if r.action == "webhooks.replay"]
    assert len(audits) == 10 and {a.result for a in audits} == {"ok"}


def test_sync_rebuilds_a_fresh_db_like_live_delivery(live_receiver: Any, emulator: EmulatorHandle,
                                                     runtime_factory: Any, tmp_path: Any) -> None:
    _scenario(live_receiver.client, emulator, live_receiver.prices)
    _settle(emulator, live_receiver)
    fresh = runtime_factory(DATABASE_URL=f"sqlite:///{tmp_path}/fresh.db",
                            STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(live_receiver.prices))
    summary = run_sync(fresh, since=None, days=30)
    assert summary["events"]["stored"] > 0
    live, rebuilt = canonical_dump(live_receiver), canonical_dump(fresh)
    for table in ("customers", "user_subscriptions", "invoices", "charges", "refunds", "disputes", "fraud_warnings"):
        assert rebuilt[table] == live[table], table


def test_prune_lists_then_deletes_duplicates_and_shadows(runtime: Any, emulator: EmulatorHandle) -> None:
    url = "https://billing.example.io/billing/webhook"
    gateway = runtime.gateway
    keep = gateway.create_webhook_endpoint({"url": url, "enabled_events": ["*"]}, idempotency_key="we-1")
    dup = gateway.create_webhook_endpoint({"url": url, "enabled_events": ["*"]}, idempotency_key="we-2")
    old = gateway.create_webhook_endpoint({"url": "https://old.example.io/billing/webhook", "enabled_events": ["*"]},
                                          idempotency_key="we-3")
    other = gateway.create_webhook_endpoint({"url": "https://example.io/other", "enabled_events": ["*"]},
                                            idempotency_key="we-4")
    dry = webhooks.prune_webhook_endpoints(runtime, url=url, apply=False, actor="cli")
    assert any(dup["id"] in line and "Would delete" in line for line in dry)
    assert any(old["id"] in line for line in dry) and not any(other["id"] in line for line in dry)
    assert len(gateway.list_webhook_endpoints()) == 4
    done = webhooks.prune_webhook_endpoints(runtime, url=url, apply=True, actor="cli")
    assert sum("Deleted" in line for line in done) == 2
    assert {e["id"] for e in gateway.list_webhook_endpoints()} == {keep["id"], other["id"]}
    assert [r.target for r in rows(runtime, AuditLog) if r.action == "webhooks.prune"] == [dup["id"], old["id"]]


def test_efw_update_after_a_decision_keeps_it(runtime: Any) -> None:
    efw = {"id": "issfr_keep", "object": "radar.early_fraud_warning", "charge": "ch_missing", "actionable": True,
           "fraud_type": "made_with_stolen_card", "created": int(time.time())}
    created = {"id": "evt_efw_1", "type": "radar.early_fraud_warning.created", "created": int(time.time()),
               "data": {"object": efw}}
    webhooks.ingest_event(runtime, created, process=True)
    with runtime.uow() as uow:
        row = uow.session.get(FraudWarning, "issfr_keep")
        row.status, row.actor, row.reason = "ignored", ADMIN_EMAIL, "known good customer"
        uow.commit()
    updated = {**created, "id": "evt_efw_2", "type": "radar.early_fraud_warning.updated",
               "created": int(time.time()) + 5, "data": {"object": {**efw, "actionable": False}}}
    webhooks.ingest_event(runtime, updated, process=True)
    row = rows(runtime, FraudWarning)[0]
    assert (row.status, row.actor, row.actionable) == ("ignored", ADMIN_EMAIL, False)
