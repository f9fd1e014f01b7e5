"""The Webhooks page's delivery log, test event and secret roll, per role (AppTest): filters in the
URL, the redacted payload, Mark resolved (audited), sending a test event, the roll stepper."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, StripeEvent
from services import event_handlers, secret_roll, webhooks
from services.webhook_secrets import fingerprint
from tests.conftest import (
    ADMIN_EMAIL,
    REPO_ROOT,
    TEST_WEBHOOK_SECRETS,
    app_test_for,
    identity_for,
    page_direct_test,
    page_text,
)
from tests.integration.test_webhook_log import _header

PRIMARY, _ROTATED = TEST_WEBHOOK_SECRETS


def _deliver(runtime: Any, event_id: str, event_type: str, object_id: str, **obj: Any) -> None:
    event = {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()) - 1,
             "livemode": False, "data": {"object": {"id": object_id, "object": "charge", **obj}}}
    body = json.dumps(event).encode()
    verified = webhooks.verify_signature(body, _header(body, PRIMARY), runtime.settings.webhook_secret_values)
    webhooks.ingest_event(runtime, verified, process=False)


@pytest.fixture
def seeded(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    def broken(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        raise RuntimeError("poison handler")

    _deliver(runtime, "evt_poison", "charge.refunded", "ch_poison", client_secret="ch_secret_should_not_show")
    _deliver(runtime, "evt_other", "product.created", "prod_1")
    monkeypatch.setitem(event_handlers.HANDLERS, "charge.refunded", broken)
    webhooks.process_event(runtime, "evt_poison")
    monkeypatch.undo()
    return runtime


def _log(at: Any) -> Any:
    return next(df.value for df in at.dataframe if "signature" in df.value.columns)


def _click(at: Any, label: str) -> None:
    next(b for b in at.button if b.label == label).click()
    at.run()


def test_admin_filters_the_log_and_the_url_keeps_the_filter(seeded: Any) -> None:
    from streamlit.testing.v1 import AppTest

    at = app_test_for("webhooks", "admin")
    assert not at.exception
    log = _log(at)
    assert set(log["event"]) == {"evt_poison", "evt_other"}
    assert f"verified with key {fingerprint(PRIMARY)} (#1 of 2)" in set(log["signature"])
    assert "failed: RuntimeError: poison handler" in set(log["processing result"])
    next(m for m in at.multiselect if m.label == "Event type").set_value(["charge.refunded"])
    _click(at, "Apply log filters")
    assert list(_log(at)["event"]) == ["evt_poison"]
    assert at.query_params["log_type"] in ("charge.refunded", ["charge.refunded"])
    # The same URL opened afresh (a refresh, a shared link) shows the same rows and event.
    fresh = AppTest.from_file(str(REPO_ROOT / "app_pages" / "webhooks.py"), default_timeout=30)
    fresh.session_state["identity"] = identity_for(ADMIN_EMAIL)
    fresh.query_params["log_type"] = "charge.refunded"
    fresh.query_params["event"] = "evt_poison"
    fresh.run()
    assert not fresh.exception
    assert list(_log(fresh)["event"]) == ["evt_poison"]
    assert next(m for m in fresh.multiselect if m.label == "Event type").value == ["charge.refunded"]
    # Junk in the URL falls back to the defaults.
    junk = AppTest.from_file(str(REPO_ROOT / "app_pages" / "webhooks.py"), default_timeout=30)
    junk.session_state["identity"] = identity_for(ADMIN_EMAIL)
    junk.query_params["log_type"] = "no.such,type"
    junk.query_params["log_page"] = "-2"
    junk.query_params["event"] = "evt_missing"
    junk.run()
    assert not junk.exception and len(_log(junk)) == 2


def test_admin_reads_the_redacted_payload_and_marks_a_poison_event_resolved(seeded: Any) -> None:
    at = app_test_for("webhooks", "admin")
    next(s for s in at.selectbox if s.label == "Event").set_value("evt_poison")
    at.run()
    payload = next(c.value for c in at.code if '"evt_poison"' in c.value)
    assert "ch_secret_should_not_show" not in payload and '"client_secret": "[redacted]"' in payload
    assert "ch_secret_should_not_show" not in page_text(at)
    next(t for t in at.text_area if t.label == "Reason (kept in the audit log)").input("charge deleted upstream")
    _click(at, "Mark resolved")
    assert "Marked evt_poison resolved" in page_text(at)
    with seeded.uow() as uow:
        row = uow.session.get(StripeEvent, "evt_poison")
        assert (row.status, row.resolved_by, row.resolution_reason) == ("resolved", ADMIN_EMAIL,
                                                                        "charge deleted upstream")
        audit = uow.session.execute(select(AuditLog).where(AuditLog.action == "webhooks.resolve")).scalar_one()
    assert (audit.actor, audit.result, audit.target) == (ADMIN_EMAIL, "ok", "evt_poison")
    assert webhooks.process_pending(seeded) == 0


def test_a_short_reason_is_refused_in_plain_words(seeded: Any) -> None:
    at = app_test_for("webhooks", "admin")
    next(s for s in at.selectbox if s.label == "Event").set_value("evt_poison")
    at.run()
    next(t for t in at.text_area if t.label == "Reason (kept in the audit log)").input("x")
    _click(at, "Mark resolved")
    assert "at least 3 characters" in page_text(at)
    with seeded.uow() as uow:
        assert uow.session.get(StripeEvent, "evt_poison").status == "failed"


def test_admin_sends_a_test_event_through_the_emulator(runtime: Any) -> None:
    at = app_test_for("webhooks", "admin")
    assert "Stripe has no API that sends a test event" in page_text(at)
    _click(at, "Send test event")
    assert not at.exception
    text = page_text(at)
    assert "Sent a test payment pi_" in text or "Test event arrived" in text
    with runtime.uow() as uow:
        audit = uow.session.execute(select(AuditLog).where(AuditLog.action == "webhooks.test_event")).scalar_one()
    assert audit.result == "ok" and audit.target.startswith("pi_")
    # No endpoint is registered in this emulator, so nothing arrives; after a while the page says what to check.
    sent = at.session_state["test_event_sent"]
    at.session_state["test_event_sent"] = dataclasses.replace(sent, sent_at=sent.sent_at - timedelta(minutes=1))
    at.run()
    assert "Nothing after 30 s: check below that the endpoint is enabled" in page_text(at)


def test_the_secret_roll_stepper_keeps_its_state(runtime: Any) -> None:
    at = app_test_for("webhooks", "admin")
    _click(at, "Start a secret roll")
    assert "Roll started" in page_text(at)
    _click(at, "Check: add the new secret")
    assert "still holds only the old secret" in page_text(at)
    # Another session (a refresh, another replica) shows the same step.
    again = app_test_for("webhooks", "admin")
    text = page_text(again)
    assert "1. Add the new secret" in text and "Check: add the new secret" in [b.label for b in again.button]
    state = secret_roll.roll_state(runtime.uow())
    assert state.current_step == "add" and state.started_by == ADMIN_EMAIL
    assert "whsec_" not in text  # keys are fingerprints only


def test_non_admin_and_signed_out_get_no_log_and_no_actions(seeded: Any) -> None:
    for role in ("non_admin", "signed_out"):
        at = page_direct_test("webhooks", role)
        text = page_text(at)
        assert "No access" in text and "Delivery log" not in text and "evt_poison" not in text
        assert not at.dataframe and not at.button and not at.code
    assert "evt_poison" not in page_text(app_test_for("webhooks", "non_admin"))
    with seeded.uow() as uow:
        assert uow.session.get(StripeEvent, "evt_poison").status == "failed"


def test_admin_asks_stripe_for_undelivered_events(runtime: Any) -> None:
    at = app_test_for("webhooks", "admin")
    _click(at, "Ask Stripe which events are not delivered yet")
    assert not at.exception
    assert "Stripe reports every event of the last 24 h delivered to every endpoint." in page_text(at)
