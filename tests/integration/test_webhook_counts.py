"""One definition per count: real signed deliveries through the receiver (first copies,
duplicates, an ignored type, a bad signature) plus a backfill from the emulator's Events
API give the same figures on the Webhooks page, on the First-24h board, in the DB aggregate
and in the receiver's /metrics."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from db.models import StripeEvent
from db.models.base import utcnow
from services import metric_points as m
from services import metrics, webhook_counts
from services.sync import sync_recent_events
from tests.conftest import TEST_WEBHOOK_SECRETS, app_test_for
from tests.integration.test_webhook_pipeline import sign
from webhooks.app import create_app


def _event(event_id: str, event_type: str, created: int | None = None) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": event_type,
                       "created": created or int(time.time()), "api_version": "2026-10-28.endive",
                       "livemode": False,
                       "data": {"object": {"id": f"obj_{event_id}", "object": "product"}}}).encode()


def _metrics(client: TestClient) -> webhook_counts.DeliveryCounts:
    return webhook_counts.prometheus_counts(client.get("/metrics").text)


def _metric_of(at: Any, label: str) -> str:
    return next(str(x.value) for x in at.metric if x.label == label)


def test_the_page_the_board_the_db_and_metrics_agree(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    # A backfill first: the emulator's Events API holds the customer.created events.
    for n in range(3):
        runtime.gateway.create_customer({"email": f"backfill{n}@example.com"}, idempotency_key=f"count-cus-{n}")
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        before = _metrics(client)
        backfill = sync_recent_events(runtime, since_ts=int(time.time()) - 3600)
        backfilled = backfill["stored"] + backfill["ignored"]
        assert backfilled >= 3
        deliveries = [("evt_c1", "invoice.paid"), ("evt_c2", "invoice.payment_failed"),
                      ("evt_c1", "invoice.paid"), ("evt_c3", "customer.subscription.updated"),
                      ("evt_c1", "invoice.paid"), ("evt_c4", "product.created"), ("evt_c4", "product.created")]
        for event_id, event_type in deliveries:
            body = _event(event_id, event_type)
            response = client.post("/billing/webhook", content=body,
                                   headers={"Stripe-Signature": sign(body, TEST_WEBHOOK_SECRETS[0])})
            assert response.status_code == 200
        bad = _event("evt_forged", "invoice.paid")
        assert client.post("/billing/webhook", content=bad,
                           headers={"Stripe-Signature": sign(bad, "whsec_wrong")}).status_code == 400
        # A backfilled event later delivered by Stripe is a duplicate delivery, not a new one.
        with runtime.uow() as uow:
            synced = uow.session.execute(select(StripeEvent).where(StripeEvent.source == "sync")).scalars().first()
            assert synced is not None
            replayed = json.dumps(synced.payload).encode()
        client.post("/billing/webhook", content=replayed,
                    headers={"Stripe-Signature": sign(replayed, TEST_WEBHOOK_SECRETS[1])})
        after = _metrics(client)

    # received = 8 verified deliveries; 4 duplicates; unique = 4 (3 handled + 1 ignored type)
    expected = webhook_counts.DeliveryCounts(received=8, duplicates=4, ignored=1, backfilled=backfilled,
                                             invalid_signatures=1)
    assert (expected.unique, expected.handled) == (4, 3)
    scraped = webhook_counts.DeliveryCounts(*(getattr(after, f) - getattr(before, f) for f in
                                              ("received", "duplicates", "ignored", "backfilled",
                                               "invalid_signatures")))
    assert scraped == expected
    db = webhook_counts.delivery_counts(runtime.uow(), since=utcnow() - timedelta(hours=24))
    assert db == expected

    board = metrics.board(runtime.uow(), start=utcnow() - timedelta(hours=1), end=utcnow() + timedelta(minutes=1))
    assert (board.totals[m.WEBHOOK_RECEIVED], board.totals[m.WEBHOOK_DUPLICATE], board.totals[m.WEBHOOK_IGNORED],
            board.totals[m.EVENTS_BACKFILLED]) == (8, 4, 1, backfilled)

    at = app_test_for("webhooks", "admin")
    assert not at.exception
    assert _metric_of(at, "Received (24 h)") == "8"
    assert _metric_of(at, "Received, unique events (24 h)") == "4"
    assert _metric_of(at, "Duplicates (24 h)") == "4"
    assert _metric_of(at, "Ignored types (24 h)") == "1"
    assert _metric_of(at, "Backfilled, Events API (24 h)") == str(backfilled)
    assert _metric_of(at, "Invalid signatures (24 h)") == "1"
    chart = at.get("plotly_chart")[0].proto.spec
    assert "webhook delivery" in chart and "backfill (sync)" in chart

    first_24h = app_test_for("first_24h", "admin")
    assert not first_24h.exception
    from services.metric_labels import label
    assert _metric_of(first_24h, label(m.WEBHOOK_RECEIVED)) == "8"
    assert _metric_of(first_24h, label(m.WEBHOOK_DUPLICATE)) == "4"
    assert _metric_of(first_24h, label(m.EVENTS_BACKFILLED)) == str(backfilled)


def test_the_chart_buckets_by_event_time_with_backfill_apart(runtime: Any) -> None:
    from services import webhooks

    now = int(time.time())
    old = json.loads(_event("evt_old", "invoice.paid", created=now - 20 * 86400))
    recent = json.loads(_event("evt_recent", "invoice.paid", created=now - 2 * 3600))
    webhooks.store_events(runtime, [old], source="sync")
    webhooks.store_events(runtime, [recent], source="webhook")
    day = webhook_counts.events_per_hour(runtime.uow(), since=utcnow() - timedelta(hours=24))
    assert [(r["source"], r["events"]) for r in day] == [("webhook delivery", 1)]  # the backfill is 20 days old
    hour_of_recent = time.strftime("%Y-%m-%d %H:00", time.gmtime(now - 2 * 3600))
    assert day[0]["hour"] == hour_of_recent
    month = webhook_counts.events_per_hour(runtime.uow(), since=utcnow() - timedelta(days=30))
    assert {(r["hour"], r["source"]) for r in month} == {
        (time.strftime("%Y-%m-%d %H:00", time.gmtime(now - 20 * 86400)), "backfill (sync)"),
        (hour_of_recent, "webhook delivery")}


def test_the_chart_window_ends_now_not_at_a_test_clocks_future(runtime: Any) -> None:
    """A test clock advanced a month stamps its events a month ahead; "last 24 h" still ends now."""
    from services import webhooks

    now = int(time.time())
    future = json.loads(_event("evt_future", "charge.succeeded", created=now + 30 * 86400))
    recent = json.loads(_event("evt_recent_2", "charge.succeeded", created=now - 600))
    webhooks.store_events(runtime, [future, recent], source="webhook")
    day = webhook_counts.events_per_hour(runtime.uow(), since=utcnow() - timedelta(hours=24), include_test=True)
    assert [(r["hour"], r["events"]) for r in day] == [(time.strftime("%Y-%m-%d %H:00", time.gmtime(now - 600)), 1)]


def test_test_clock_deliveries_are_shown_only_when_asked(runtime: Any) -> None:
    from services import webhooks

    event = json.loads(_event("evt_clocked", "invoice.paid"))
    event["data"]["object"]["test_clock"] = "clock_qa_1"
    webhooks.store_events(runtime, [event, event], source="webhook")
    webhooks.store_events(runtime, [json.loads(_event("evt_prod", "invoice.paid"))], source="webhook")
    at = app_test_for("webhooks", "admin")
    assert (_metric_of(at, "Received (24 h)"), _metric_of(at, "Duplicates (24 h)")) == ("1", "0")
    at.toggle[0].set_value(True)
    at.run()
    assert (_metric_of(at, "Received (24 h)"), _metric_of(at, "Duplicates (24 h)")) == ("3", "1")
    at.radio[0].set_value("1 h")
    at.run()
    assert _metric_of(at, "Received (1 h)") == "3"  # the tiles follow the window
