"""The webhooks page per role: health, failed events with Replay, endpoint check."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from db.models import AuditLog, StripeEvent
from services import event_handlers, webhooks
from tests.conftest import app_test_for, page_direct_test, page_text


def _failed_event(runtime: Any, monkeypatch: Any) -> str:
    def broken(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.refunded", broken)
    event = {"id": "evt_page_1", "type": "charge.refunded", "created": int(time.time()),
             "data": {"object": {"id": "ch_missing", "object": "charge"}}}
    webhooks.ingest_event(runtime, event, process=True)
    monkeypatch.undo()
    return "evt_page_1"


def test_admin_sees_health_and_replays_a_failed_event(runtime: Any, monkeypatch: Any) -> None:
    event_id = _failed_event(runtime, monkeypatch)
    at = app_test_for("webhooks", "admin")
    text = page_text(at)
    assert not at.exception
    assert "Failed / pending" in text and "handler bug" in at.dataframe[0].value.to_string()
    assert "no endpoint is registered" in text  # the emulator has none yet
    [b for b in at.button if b.label == "Replay…"][0].click()
    at.run()
    [b for b in at.button if b.label == "Replay now"][0].click()
    at.run()
    assert f"Replayed {event_id}: processed." in page_text(at)
    with runtime.uow() as uow:
        assert uow.session.get(StripeEvent, event_id).status == "processed"
        audit = uow.session.execute(select(AuditLog).where(AuditLog.action == "webhooks.replay")).scalar_one()
    assert (audit.actor, audit.result, audit.target) == ("admin@example.com", "ok", event_id)


def test_empty_state_and_registered_endpoint(runtime_factory: Any) -> None:
    runtime = runtime_factory(CONSOLE_WEBHOOK_URL="https://billing.example.io/billing/webhook")
    runtime.gateway.create_webhook_endpoint(
        {"url": "https://billing.example.io/billing/webhook", "enabled_events": ["*"]}, idempotency_key="we-page")
    at = app_test_for("webhooks", "admin")
    text = page_text(at)
    assert "No events received yet" in text and "Every stored event has been processed." in text
    assert "Subscribed to every event the console needs." in text


def test_non_admin_and_signed_out_see_nothing(runtime: Any, monkeypatch: Any) -> None:
    _failed_event(runtime, monkeypatch)
    for role in ("non_admin", "signed_out"):
        at = page_direct_test("webhooks", role)
        assert "No access" in page_text(at)
        assert not at.dataframe and not at.button
    assert "handler bug" not in page_text(app_test_for("webhooks", "non_admin"))
