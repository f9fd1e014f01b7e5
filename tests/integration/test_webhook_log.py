"""The webhook delivery log on SQLite and PostgreSQL: what each row says (signature, result,
latency), SQL-side filters and paging, redacted payloads, "mark resolved" (audited, never
retried), per-endpoint success, a test event through the emulator, and the guided secret roll
against a receiver under uvicorn with the emulator rolling the endpoint's secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import stripe
import uvicorn
from sqlalchemy import select

from db.models import AuditLog, StripeEvent
from db.models.base import utcnow
from services import event_handlers, secret_roll, webhook_log, webhook_test_event, webhooks
from services.auth import AccessDenied
from services.webhook_secrets import fingerprint
from tests.conftest import ADMIN_EMAIL, TEST_API_KEY, TEST_WEBHOOK_SECRETS, VIEWER_EMAIL, EmulatorHandle
from webhooks.app import create_app

PRIMARY, ROTATED = TEST_WEBHOOK_SECRETS
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _header(body: bytes, *secrets: str) -> str:
    ts = int(time.time())
    return f"t={ts}," + ",".join(
        "v1=" + hmac.new(s.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest() for s in secrets)


def _event(event_id: str, event_type: str = "charge.refunded", object_id: str = "ch_1", **obj: Any) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()) - 2,
            "livemode": False, "data": {"object": {"id": object_id, "object": "charge", **obj}}}


def _deliver(runtime: Any, event: dict[str, Any], *secrets: str) -> str:
    body = json.dumps(event).encode()
    verified = webhooks.verify_signature(body, _header(body, *secrets), runtime.settings.webhook_secret_values)
    return webhooks.ingest_event(runtime, verified, process=False)


def _audit(runtime: Any, action: str) -> list[AuditLog]:
    with runtime.uow() as uow:
        return list(uow.session.execute(select(AuditLog).where(AuditLog.action == action)
                                        .order_by(AuditLog.id)).scalars())


def _event_row(runtime: Any, event_id: str) -> StripeEvent:
    with runtime.uow() as uow:
        row: StripeEvent | None = uow.session.get(StripeEvent, event_id)
        assert row is not None
        return row


def test_rows_say_how_each_event_arrived_and_what_became_of_it(runtime_factory: Any, database_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    assert _deliver(runtime, _event("evt_a", object_id="ch_a"), PRIMARY) == "stored"
    assert _deliver(runtime, _event("evt_a", object_id="ch_a"), PRIMARY) == "duplicate"
    _deliver(runtime, _event("evt_b", "product.created", "prod_1"), PRIMARY, ROTATED)  # a roll's overlap
    webhooks.store_events(runtime, [_event("evt_c", "charge.succeeded", "ch_c")], source="sync")

    def broken(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.refunded", broken)
    webhooks.process_event(runtime, "evt_a")
    page = webhook_log.list_deliveries(runtime.uow(), webhook_log.LogFilter(), settings=runtime.settings)
    by_id = {row.id: row for row in page.rows}
    assert page.total == 3 and set(by_id) == {"evt_a", "evt_b", "evt_c"}
    a, b, c = by_id["evt_a"], by_id["evt_b"], by_id["evt_c"]
    assert a.signature == f"verified with key {fingerprint(PRIMARY)} (#1 of 2)"
    assert (a.source, a.deliveries, a.attempts, a.status) == ("webhook", 2, 1, "failed")
    assert a.result == "failed: RuntimeError: handler bug"
    assert a.latency_seconds is not None and 0 <= a.latency_seconds < 60
    assert b.signature == (f"verified with key {fingerprint(PRIMARY)} (#1 of 2) and key {fingerprint(ROTATED)} "
                           "(#2 of 2)")
    assert b.result.startswith("ignored")
    assert (c.source, c.signature, c.latency_seconds) == ("backfill (sync)", "not signed: read from the Events API",
                                                         None)
    # A secret that is no longer configured is still named, and said to be gone.
    later = runtime_factory(DATABASE_URL=database_url, STRIPE_WEBHOOK_SECRETS=ROTATED)
    row = webhook_log.list_deliveries(later.uow(), webhook_log.LogFilter(object_id="ch_a"),
                                      settings=later.settings).rows[0]
    assert row.signature == f"verified with key {fingerprint(PRIMARY)} (no longer configured)"


def test_filters_and_paging_run_in_sql(runtime_factory: Any, database_url: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    events = [_event(f"evt_{i:02d}", "charge.refunded" if i % 2 else "invoice.paid", f"obj_{i % 3}")
              for i in range(12)]
    for event in events:
        _deliver(runtime, event, PRIMARY)
    webhooks.store_events(runtime, [_event("evt_sync", "invoice.paid", "obj_0")], source="sync")

    def page(**kwargs: Any) -> webhook_log.LogPage:
        return webhook_log.list_deliveries(runtime.uow(), webhook_log.LogFilter(**kwargs), settings=runtime.settings)

    assert page(types=("charge.refunded",)).total == 6
    assert {r.type for r in page(types=("charge.refunded",)).rows} == {"charge.refunded"}
    assert {r.id for r in page(object_id="obj_1").rows} == {"evt_01", "evt_04", "evt_07", "evt_10"}
    assert [r.id for r in page(object_id=" evt_05 ").rows] == ["evt_05"]  # an event id works too
    assert [r.id for r in page(source="backfill").rows] == ["evt_sync"]
    assert page(source="webhook").total == 12
    assert page(types=("invoice.paid",), object_id="obj_0").total == 3  # evt_00, evt_06 and the backfilled one
    assert page(statuses=("failed",)).total == 0 and page(statuses=("pending",)).total == 13
    first, second, last = page(limit=5), page(limit=5, offset=5), page(limit=5, offset=10)
    assert (first.total, first.pages, len(last.rows)) == (13, 3, 3)
    seen = [r.id for r in first.rows + second.rows + last.rows]
    assert len(set(seen)) == 13  # newest first, no row twice across pages
    assert webhook_log.event_types(runtime.uow()) == ["charge.refunded", "invoice.paid"]
    # Past the count cap the total reads "N+" (an exact count of a huge inbox is a full scan each time).
    monkeypatch.setattr(webhook_log, "COUNT_CAP", 10)
    capped = page(limit=5)
    assert (capped.total, capped.capped, capped.total_text, len(capped.rows)) == (10, True, "10+", 5)
    assert page(types=("charge.refunded",)).capped is False


def test_payload_view_redacts_secrets(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    event = _event("evt_pi", "payment_intent.succeeded", "pi_1", client_secret="pi_1_secret_abcdef",
                   description=f"note with {TEST_API_KEY} and {PRIMARY} inside",
                   metadata={"callback": "https://user:hunter2pass@hooks.example.io/x", "plain": "kept"})
    _deliver(runtime, event, PRIMARY)
    detail = webhook_log.event_detail(runtime.uow(), "evt_pi", settings=runtime.settings)
    assert detail is not None
    shown = json.dumps(detail.payload)
    for secret in ("pi_1_secret_abcdef", TEST_API_KEY, PRIMARY, "hunter2pass"):
        assert secret not in shown
    obj = detail.payload["data"]["object"]
    assert obj["client_secret"] == "[redacted]" and obj["metadata"]["plain"] == "kept"
    assert _event_row(runtime, "evt_pi").payload["data"]["object"]["client_secret"] == "pi_1_secret_abcdef"
    assert webhook_log.event_detail(runtime.uow(), "evt_missing", settings=runtime.settings) is None


def _poison(runtime: Any, monkeypatch: pytest.MonkeyPatch, event_id: str = "evt_poison") -> None:
    def broken(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        raise RuntimeError("poison: cannot map this charge")

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.refunded", broken)
    _deliver(runtime, _event(event_id), PRIMARY)
    webhooks.process_event(runtime, event_id)


def test_mark_resolved_is_audited_and_the_worker_never_retries_it(runtime_factory: Any, database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    _poison(runtime, monkeypatch)
    assert _event_row(runtime, "evt_poison").status == "failed"
    row = webhook_log.resolve_event("evt_poison", "  charge was deleted in Stripe;\nnothing to apply ",
                                    actor=ADMIN_EMAIL, settings=runtime.settings, uow=runtime.uow())
    assert row.status == "resolved"
    assert row.result == f"resolved by {ADMIN_EMAIL}: charge was deleted in Stripe; nothing to apply"
    stored = _event_row(runtime, "evt_poison")
    assert (stored.resolved_by, stored.next_attempt_at) == (ADMIN_EMAIL, None) and stored.resolved_at is not None
    # Far past any backoff, the worker's batch does not pick it up again.
    assert webhooks.process_pending(runtime, now=utcnow() + timedelta(days=3)) == 0
    assert webhooks.process_event(runtime, "evt_poison", now=utcnow() + timedelta(days=3)) is False
    after = _event_row(runtime, "evt_poison")
    assert (after.status, after.attempts) == ("resolved", 1)
    [ok] = _audit(runtime, "webhooks.resolve")
    assert (ok.actor, ok.result, ok.target, ok.idempotency_key) == (ADMIN_EMAIL, "ok", "evt_poison",
                                                                    "resolve:evt_poison")
    assert ok.details["previous"]["status"] == "failed" and "nothing to apply" in ok.details["reason"]


def test_replay_from_the_log_refuses_in_words_when_it_fails_again(runtime_factory: Any, database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    working = event_handlers.HANDLERS["charge.refunded"]
    _poison(runtime, monkeypatch)
    kw: dict[str, Any] = {"actor": ADMIN_EMAIL, "settings": runtime.settings, "runtime": runtime}
    with pytest.raises(webhook_log.WebhookLogError, match="evt_poison ran again and failed again"):
        webhook_log.replay("evt_poison", uow=runtime.uow(), **kw)
    with pytest.raises(webhook_log.WebhookLogError, match="No stored event evt_missing"):
        webhook_log.replay("evt_missing", uow=runtime.uow(), **kw)
    assert (_event_row(runtime, "evt_poison").status, _event_row(runtime, "evt_poison").attempts) == ("failed", 2)
    monkeypatch.setitem(event_handlers.HANDLERS, "charge.refunded", working)  # fixed: the replay now processes it
    assert webhook_log.replay("evt_poison", uow=runtime.uow(), **kw) is True
    assert _event_row(runtime, "evt_poison").status == "processed"
    assert [(a.result, a.target) for a in _audit(runtime, "webhooks.replay")] == [
        ("error", "evt_poison"), ("refused", "evt_missing"), ("ok", "evt_poison")]


def test_mark_resolved_refusals_change_nothing_and_are_audited(runtime_factory: Any, database_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    _poison(runtime, monkeypatch)
    _deliver(runtime, _event("evt_fine", "product.created"), PRIMARY)  # ignored: nothing to resolve
    cases = [("evt_poison", "no"), ("evt_fine", "a fine reason"), ("evt_nope", "a fine reason")]
    for event_id, reason in cases:
        with pytest.raises(webhook_log.WebhookLogError):
            webhook_log.resolve_event(event_id, reason, actor=ADMIN_EMAIL, settings=runtime.settings,
                                      uow=runtime.uow())
    # Claimed by a worker right now (its lease runs): refused until that attempt ends.
    with runtime.uow() as uow:
        row = uow.session.get(StripeEvent, "evt_poison")
        row.status, row.next_attempt_at = "processing", utcnow() + timedelta(minutes=4)
        uow.commit()
    with pytest.raises(webhook_log.WebhookLogError, match="being processed right now"):
        webhook_log.resolve_event("evt_poison", "stuck for hours", actor=ADMIN_EMAIL, settings=runtime.settings,
                                  uow=runtime.uow())
    with pytest.raises(AccessDenied):
        webhook_log.resolve_event("evt_poison", "I am not an admin", actor=VIEWER_EMAIL, settings=runtime.settings,
                                  uow=runtime.uow())
    assert _event_row(runtime, "evt_poison").status == "processing"
    results = [(a.result, a.target) for a in _audit(runtime, "webhooks.resolve")]
    assert results == [("refused", "evt_poison"), ("refused", "evt_fine"), ("refused", "evt_nope"),
                       ("refused", "evt_poison"), ("denied", "evt_poison")]
    # Once the lease has run out (the worker died mid-run), it can be closed.
    webhook_log.resolve_event("evt_poison", "crashes the worker every time", actor=ADMIN_EMAIL,
                              settings=runtime.settings, uow=runtime.uow(), now=utcnow() + timedelta(minutes=10))
    assert _event_row(runtime, "evt_poison").status == "resolved"


def test_endpoint_success_per_hour_tells_endpoints_apart_by_secret(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    for i in range(3):
        _deliver(runtime, _event(f"evt_p{i}", "product.created", f"prod_{i}"), PRIMARY)
    _deliver(runtime, _event("evt_p0", "product.created", "prod_0"), PRIMARY)  # a redelivery
    _deliver(runtime, _event("evt_r0", "product.created", "prod_9"), ROTATED)
    webhooks.record_invalid_signature(runtime, "no signature matches")
    rows = webhook_log.endpoint_success_per_hour(runtime.uow(), since=utcnow() - timedelta(hours=1),
                                                 settings=runtime.settings)
    by_endpoint = {r["endpoint"]: r for r in rows}
    primary = by_endpoint[f"key {fingerprint(PRIMARY)} (#1 of 2)"]
    rotated = by_endpoint[f"key {fingerprint(ROTATED)} (#2 of 2)"]
    refused = by_endpoint[webhook_log.REFUSED_SERIES]
    assert (primary["accepted"], primary["events"], primary["handled"]) == (4, 3, 3)
    assert (rotated["accepted"], refused["refused"]) == (1, 1)
    # If the refused delivery fell into another hour than the rest, its hour is all refusals.
    if refused["hour"] == primary["hour"]:
        assert primary["success"] == pytest.approx(5 / 6)


# --- through the emulator: a test event and the secret roll, with a receiver under uvicorn ---------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver(runtime_factory: Any, emulator: EmulatorHandle, database_url: str) -> Iterator[Any]:
    """The console's receiver under uvicorn, registered with the emulator for the console's events."""
    port = _free_port()
    client = stripe.StripeClient(TEST_API_KEY, base_addresses={"api": emulator.base_url}, max_network_retries=0)
    endpoint = client.v1.webhook_endpoints.create({"url": f"http://127.0.0.1:{port}/billing/webhook",
                                                   "enabled_events": ["charge.succeeded"]})
    runtime = runtime_factory(DATABASE_URL=database_url, STRIPE_WEBHOOK_SECRETS=endpoint.secret,
                              WEBHOOK_PROCESS_INLINE="true")
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    runtime.endpoint_id, runtime.endpoint_secret = endpoint.id, endpoint.secret
    yield runtime
    server.should_exit = True
    thread.join(timeout=10)


def _send_and_wait(runtime: Any, emulator: EmulatorHandle, token: str) -> webhook_test_event.Arrival:
    sent = webhook_test_event.send_test_event(token, actor=ADMIN_EMAIL, settings=runtime.settings,
                                              uow=runtime.uow(), runtime=runtime)
    for _ in range(100):
        emulator.flush_webhooks()
        arrived = webhook_test_event.arrival(runtime.uow(), sent)
        if arrived is not None:
            return arrived
        time.sleep(0.05)
    raise AssertionError("the test event never arrived")


def test_a_test_event_arrives_signed_through_the_emulator(receiver: Any, emulator: EmulatorHandle) -> None:
    arrived = _send_and_wait(receiver, emulator, "tok-1")
    assert arrived.signed_with == fingerprint(receiver.endpoint_secret)
    row = _event_row(receiver, arrived.event_id)
    assert row.type == "charge.succeeded" and row.source == "webhook"
    charge = row.payload["data"]["object"]
    assert (charge["amount"], charge["currency"], charge["status"]) == (100, "usd", "succeeded")
    [sent] = _audit(receiver, "webhooks.test_event")
    assert charge["payment_intent"] == sent.target and sent.details["charge"] == charge["id"]
    # The same click (token) pays once: the idempotency key is derived from it.
    again = webhook_test_event.send_test_event("tok-1", actor=ADMIN_EMAIL, settings=receiver.settings,
                                               uow=receiver.uow(), runtime=receiver)
    assert again.charge == charge["id"]
    intents = [r for r in emulator.requests() if r["path"] == "/v1/payment_intents" and r["method"] == "POST"]
    assert {r["idempotency_key"] for r in intents} == {"webhook-test-event:tok-1"}
    assert [a.result for a in _audit(receiver, "webhooks.test_event")] == ["ok", "ok"]
    with receiver.uow() as uow:
        assert uow.session.query(StripeEvent).filter_by(type="charge.succeeded").count() == 1


def test_live_mode_never_sends_a_test_payment(runtime_factory: Any, emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(STRIPE_MODE="live", STRIPE_API_KEY="sk_live_CANARYlive0123456789")
    with pytest.raises(webhook_test_event.WebhookTestEventError, match="real 1.00 USD payment"):
        webhook_test_event.send_test_event("tok", actor=ADMIN_EMAIL, settings=runtime.settings,
                                           uow=runtime.uow(), runtime=runtime)
    assert not [r for r in emulator.requests() if r["path"] == "/v1/payment_intents"]
    assert [a.result for a in _audit(runtime, "webhooks.test_event")] == ["refused"]


def _restart_with(runtime: Any, runtime_factory: Any, database_url: str, secrets: list[str]) -> None:
    """What a deploy does: every process re-reads STRIPE_WEBHOOK_SECRETS (the receiver reads the
    runtime's settings on each request)."""
    runtime.settings = runtime_factory(DATABASE_URL=database_url, STRIPE_WEBHOOK_SECRETS=",".join(secrets),
                                       WEBHOOK_PROCESS_INLINE="true").settings


def test_guided_secret_roll_add_verify_retire(receiver: Any, emulator: EmulatorHandle, runtime_factory: Any,
                                              database_url: str) -> None:
    old = receiver.endpoint_secret

    def step(fn: Callable[..., secret_roll.RollState]) -> secret_roll.RollState:
        return fn(actor=ADMIN_EMAIL, settings=receiver.settings, uow=receiver.uow())

    state = step(secret_roll.start_roll)
    assert state.current_step == "add" and state.old == (fingerprint(old),)
    with pytest.raises(secret_roll.SecretRollError, match="only the old secret"):
        step(secret_roll.confirm_added)
    with pytest.raises(secret_roll.SecretRollError, match="in order"):
        step(secret_roll.confirm_verified)
    # Roll at "Stripe": the old secret keeps signing beside the new one for an hour.
    rolled = emulator.admin(f"webhook_endpoints/{receiver.endpoint_id}/roll_secret", {"expires_in_s": 3600})
    new = rolled["secret"]
    _restart_with(receiver, runtime_factory, database_url, [old, new])
    state = step(secret_roll.confirm_added)
    assert (state.current_step, state.new) == ("verify", fingerprint(new))
    with pytest.raises(secret_roll.SecretRollError, match="No delivery has been verified"):
        step(secret_roll.confirm_verified)
    arrived = _send_and_wait(receiver, emulator, "roll-1")
    assert set((arrived.signed_with or "").split(",")) == {fingerprint(old), fingerprint(new)}  # the overlap
    state = step(secret_roll.confirm_verified)
    assert state.current_step == "retire" and (state.done or {})["verify"]["event"] == arrived.event_id
    with pytest.raises(secret_roll.SecretRollError, match="still holds the old secret"):
        step(secret_roll.confirm_retired)
    _restart_with(receiver, runtime_factory, database_url, [new])
    state = step(secret_roll.confirm_retired)
    assert not state.active and state.current_step is None and state.finished_at
    assert all(state.step_state(s) == "done" for s in secret_roll.STEPS)
    # Deliveries keep arriving, now verified by the new secret alone.
    assert _send_and_wait(receiver, emulator, "roll-2").signed_with == fingerprint(new)
    actions = [(a.action, a.result) for a in _audit_all(receiver) if a.action.startswith("webhooks.secret_roll")]
    assert actions == [("webhooks.secret_roll.start", "ok"), ("webhooks.secret_roll.add", "refused"),
                       ("webhooks.secret_roll.verify", "refused"), ("webhooks.secret_roll.add", "ok"),
                       ("webhooks.secret_roll.verify", "refused"), ("webhooks.secret_roll.verify", "ok"),
                       ("webhooks.secret_roll.retire", "refused"), ("webhooks.secret_roll.retire", "ok")]
    # The state survives the process: a fresh read shows the finished roll.
    assert (secret_roll.roll_state(receiver.uow()).done or {})["retire"]["by"] == ADMIN_EMAIL


def test_secret_roll_guards(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url, STRIPE_WEBHOOK_SECRETS=PRIMARY)
    with pytest.raises(AccessDenied):
        secret_roll.start_roll(actor=VIEWER_EMAIL, settings=runtime.settings, uow=runtime.uow())
    secret_roll.start_roll(actor=ADMIN_EMAIL, settings=runtime.settings, uow=runtime.uow())
    with pytest.raises(secret_roll.SecretRollError, match="already in progress"):
        secret_roll.start_roll(actor=ADMIN_EMAIL, settings=runtime.settings, uow=runtime.uow())
    swapped = runtime_factory(DATABASE_URL=database_url, STRIPE_WEBHOOK_SECRETS=ROTATED)  # old removed too early
    with pytest.raises(secret_roll.SecretRollError, match="removed too early"):
        secret_roll.confirm_added(actor=ADMIN_EMAIL, settings=swapped.settings, uow=swapped.uow())
    state = secret_roll.cancel_roll("wrong endpoint", actor=ADMIN_EMAIL, settings=runtime.settings,
                                    uow=runtime.uow())
    assert state.cancelled and not state.active
    denied = [a for a in _audit_all(runtime) if a.result == "denied"]
    assert [(a.action, a.actor) for a in denied] == [("webhooks.secret_roll.start", VIEWER_EMAIL)]


def _audit_all(runtime: Any) -> list[AuditLog]:
    with runtime.uow() as uow:
        return list(uow.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars())


@SQLITE_ONLY  # about Stripe's (the emulator's) side; the DB part runs on both above
def test_stripe_lists_the_events_it_could_not_deliver(runtime_factory: Any, emulator: EmulatorHandle,
                                                     database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    client = stripe.StripeClient(TEST_API_KEY, base_addresses={"api": emulator.base_url}, max_network_retries=0)
    client.v1.webhook_endpoints.create({"url": f"http://127.0.0.1:{_free_port()}/billing/webhook",  # nobody there
                                        "enabled_events": ["customer.created"]})
    client.v1.customers.create({"email": "undelivered@example.io"})
    emulator.flush_webhooks()  # the first attempt fails; Stripe's retries are minutes away
    found = webhook_log.undelivered_at_stripe(runtime, since=utcnow() - timedelta(minutes=5))
    [event] = [e for e in found.events if e["type"] == "customer.created"]
    assert (event["stored here"], found.missing_here, found.more) == (False, len(found.events), False)
    # Once the event is in the inbox (a backfill), it is no longer missing here.
    webhooks.store_events(runtime, [runtime.gateway.retrieve_event(event["id"])], source="sync")
    again = webhook_log.undelivered_at_stripe(runtime, since=utcnow() - timedelta(minutes=5))
    assert next(e for e in again.events if e["id"] == event["id"])["stored here"] is True


@SQLITE_ONLY  # about Stripe's (the emulator's) side; the DB part runs on both above
def test_a_roll_without_overlap_is_refused_by_a_receiver_still_on_the_old_secret(
        receiver: Any, emulator: EmulatorHandle) -> None:
    """Why the runbook keeps the old secret: rolled with no overlap, Stripe signs with the new secret
    only, and a receiver that does not hold it yet answers 400 (Stripe retries later)."""
    rolled = emulator.admin(f"webhook_endpoints/{receiver.endpoint_id}/roll_secret", {"expires_in_s": 0})
    assert rolled["previous_secret_expires_at"] is None and rolled["secret"] != receiver.endpoint_secret
    sent = webhook_test_event.send_test_event("no-overlap", actor=ADMIN_EMAIL, settings=receiver.settings,
                                              uow=receiver.uow(), runtime=receiver)
    emulator.flush_webhooks()
    attempts = [d for d in emulator.admin("deliveries", method="GET")["data"] if d["type"] == "charge.succeeded"]
    assert attempts and not any(d["ok"] for d in attempts)
    assert webhook_test_event.arrival(receiver.uow(), sent) is None


def test_rolling_one_endpoints_secret_keeps_the_other_endpoints(runtime_factory: Any, database_url: str) -> None:
    """Two endpoints, two secrets: rolling the first one's never asks to remove the second's."""
    new = "whsec_CANARYnewsecret0123456789abcdef"

    def settings(*secrets: str) -> Any:
        return runtime_factory(DATABASE_URL=database_url, STRIPE_WEBHOOK_SECRETS=",".join(secrets))

    before = settings(PRIMARY, ROTATED)
    with pytest.raises(secret_roll.SecretRollError, match="configured now"):
        secret_roll.start_roll(["0123456789ab"], actor=ADMIN_EMAIL, settings=before.settings, uow=before.uow())
    state = secret_roll.start_roll([fingerprint(PRIMARY)], actor=ADMIN_EMAIL, settings=before.settings,
                                   uow=before.uow())
    assert state.old == (fingerprint(PRIMARY),)
    during = settings(PRIMARY, ROTATED, new)
    assert secret_roll.confirm_added(actor=ADMIN_EMAIL, settings=during.settings, uow=during.uow()).new == \
        fingerprint(new)
    _deliver(during, _event("evt_new_key", "product.created", "prod_n"), new)
    secret_roll.confirm_verified(actor=ADMIN_EMAIL, settings=during.settings, uow=during.uow())
    after = settings(ROTATED, new)  # the other endpoint's secret stays
    done = secret_roll.confirm_retired(actor=ADMIN_EMAIL, settings=after.settings, uow=after.uow())
    assert not done.active and (done.done or {})["retire"]["retired"] == [fingerprint(PRIMARY)]
