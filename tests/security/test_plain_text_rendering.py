"""Customer-controlled text (names, emails, metadata, evidence, reasons, notes, event fields,
audit actors/targets) is shown literally on every page and never as Markdown or HTML: no
element that renders Markdown (text, captions, alerts, headings, labels, help) carries an
unescaped link, image, tag or emphasis from it, and a person still reads the exact text."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import streamlit as st

from app_pages._shared import plain
from db.models import StripeEvent
from services import audit, checklist, event_handlers, qa_matrix, webhooks
from services import fraud_warnings as efw
from services.auth import Identity
from services.runtime import Runtime, set_runtime
from services.sync import run_sync
from tests.apptest.conftest import shell_runtime  # noqa: F401 (the AppTest runtime fixture)
from tests.conftest import ADMIN_EMAIL, EmulatorHandle, app_test_for, page_text, unescape_markdown
from tests.integration.reconcile_fixtures import fake_stripe_runtime, subscription

HOSTILE = ("![x](http://evil.test/pixel.png) [Session expired — click to re-verify](http://evil.test/login) "
           "<img src=x onerror=alert(1)> **bold**")
# Every character here is allowed in an email's local part (RFC 5322 atext).
HOSTILE_EMAIL = "*x*_y_~z~{w}|`c`=$d$+e^f!#&'@evil.test"

# Elements whose body Streamlit renders as Markdown; every element's label and help too.
MARKDOWN_TYPES = {"title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error",
                  "toast", "exception"}
UNESCAPED = [
    re.compile(r"(?<!\\)\]\(<?http://evil"),             # [text](http://evil… / ![alt](http://evil…
    re.compile(r"(?<![\\])http://evil\.test"),          # any raw URL (GFM autolinks it)
    re.compile(r"(?<!\\)<img"),                         # raw HTML
    re.compile(r"(?<!\\)\*(?<!\\)\*bold"),              # emphasis
    re.compile(r"(?<!\\)`c(?<!\\)`"),                   # code span from the email
]

# GitHub-flavoured Markdown autolinks URLs in the text *after* escapes are resolved
# (so "http\\://…" still becomes a link); what that pass sees must hold none.
# Emails may autolink: only to mailto:, no fetch, no other site; ops copy them, so they stay exact.
AUTOLINKED = re.compile(r"(?i)(?:https?://|www\.)evil\.test")
_ESCAPE_PAIR = re.compile(r"\\([!-/:-@\[-`{-~])")


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def markdown_bodies(at: Any) -> list[str]:
    """Every string the page hands to Streamlit's Markdown renderer."""
    bodies: list[str] = []
    for node in _walk(at._tree):
        if hasattr(node, "children"):
            label = getattr(node, "label", None)  # expanders, dialogs, tabs
            if isinstance(label, str):
                bodies.append(label)
            continue
        if getattr(node, "type", None) in MARKDOWN_TYPES and isinstance(getattr(node, "value", None), str):
            bodies.append(node.value)
        for attr in ("label", "help"):
            value = getattr(node, attr, None)
            if isinstance(value, str):
                bodies.append(value)
        proto_help = getattr(getattr(node, "proto", None), "help", None)
        if isinstance(proto_help, str) and proto_help:
            bodies.append(proto_help)
    return bodies


def assert_inert(at: Any, *, shows: list[str], in_markdown: bool) -> None:
    """No Markdown body carries the hostile text unescaped; the person reads it literally."""
    assert not at.exception, [e.value for e in at.exception]
    bodies = markdown_bodies(at)
    for body in bodies:
        for pattern in UNESCAPED:
            assert not pattern.search(body), f"Markdown interprets customer text: {body[:200]!r}"
        assert not AUTOLINKED.search(_ESCAPE_PAIR.sub(r"\1", body)), f"autolinked: {body[:200]!r}"
    text = page_text(at)
    for literal in shows:
        assert literal in text, f"the page does not show {literal[:40]!r} literally"
        if in_markdown:
            assert any(literal in unescape_markdown(body) for body in bodies), "not in a Markdown element"


def _click(at: Any, label: str) -> None:
    exact = [b for b in at.button if b.label == label]
    (exact or [b for b in at.button if b.label.startswith(label)])[0].click()
    at.run()


def test_plain_escapes_every_markdown_construct_and_round_trips() -> None:
    for text in (HOSTILE, HOSTILE_EMAIL, "# heading\n\n    code\n- item\n1. one\n> quote\n| a | b |\n---",
                 ":red[colour] :material/home: $x^2$ ~strike~ &amp; www.evil.test ops@evil.test \\ back"):
        escaped = plain(text)
        assert unescape_markdown(escaped) == re.sub(r"\n+", " ", text)  # reads as typed, on one line
        # Once the escape pairs are taken out, nothing with a Markdown meaning is left.
        assert not re.search(r"[\\`*_{}\[\]()#+\-.!|~<>$:&=^@\n]", re.sub(r"\\.", "", escaped)), escaped
        assert not AUTOLINKED.search(_ESCAPE_PAIR.sub(r"\1", escaped)), escaped  # no bare URL or email either
    assert unescape_markdown(plain(HOSTILE)) == HOSTILE
    assert plain("Acme Ltd 42") == "Acme Ltd 42"


# --- disputes: the customer card, the evidence form and the submit confirmation ---------------
def test_disputes_page_shows_customer_text_literally(runtime: Any, emulator: EmulatorHandle) -> None:
    gateway = runtime.gateway
    customer = gateway.create_customer({"email": HOSTILE_EMAIL, "name": HOSTILE}, idempotency_key="c-hostile")
    gateway.client.v1.payment_intents.create({"amount": 4900, "currency": "usd", "customer": customer["id"],
                                              "payment_method": "pm_card_createDispute", "confirm": True})
    run_sync(runtime, since=None, days=30)
    at = app_test_for("disputes", "admin")
    # The customer card shows name and email in a plain-text element (st.text), not Markdown.
    assert_inert(at, shows=[HOSTILE, HOSTILE_EMAIL], in_markdown=False)
    assert any(HOSTILE in str(t.value) for t in at.text)
    name_box = [t for t in at.text_input if t.label == "Customer name"]
    assert name_box and name_box[0].value == HOSTILE  # drafted evidence: a widget value, plain text
    _click(at, "Save draft")
    _click(at, "Submit evidence…")
    assert "can be submitted only once" in page_text(at)
    assert_inert(at, shows=[], in_markdown=False)


# --- early fraud warnings: the queue, the refund confirmation, an ignore reason ---------------
def test_fraud_warnings_page_shows_customer_text_literally(runtime: Any, emulator: EmulatorHandle) -> None:
    gateway = runtime.gateway
    customer = gateway.create_customer({"email": HOSTILE_EMAIL, "name": HOSTILE}, idempotency_key="c-efw-hostile")
    intent = gateway.client.v1.payment_intents.create({"amount": 4200, "currency": "usd", "customer": customer["id"],
                                                       "payment_method": "pm_card_createIssuerFraudRecord",
                                                       "confirm": True})
    run_sync(runtime, since=None, days=30)
    at = app_test_for("fraud_warnings", "admin")
    assert_inert(at, shows=[HOSTILE_EMAIL], in_markdown=False)
    _click(at, "Refund full amount")
    assert "Refund **42.00 USD**" in page_text(at)
    assert_inert(at, shows=[HOSTILE_EMAIL], in_markdown=True)  # the confirmation names the customer

    warning = next(gateway.list_early_fraud_warnings(charge=intent.latest_charge))
    efw.ignore_fraud_warning(warning["id"], reason=HOSTILE, actor=ADMIN_EMAIL, settings=runtime.settings,
                             uow=runtime.uow())
    at = app_test_for("fraud_warnings", "admin")
    next(m for m in at.multiselect if m.label == "Status").set_value(["ignored"])
    _click(at, "Apply filters")
    assert_inert(at, shows=[HOSTILE], in_markdown=True)  # "Reason: …"


# --- plan changes and reconciliation: Stripe metadata and customer emails ---------------------
@pytest.fixture
def metadata_runtime(migrated_sqlite_url: str) -> Iterator[Any]:
    with fake_stripe_runtime(migrated_sqlite_url, [
        subscription("sub_hostile", price="price_pro_monthly", customer="cus_hostile", pending_plan=HOSTILE),
    ], [{"id": "cus_hostile", "email": HOSTILE_EMAIL, "name": HOSTILE}]) as runtime:
        yield runtime


def test_plan_changes_page_shows_metadata_and_lookups_literally(metadata_runtime: Any) -> None:
    at = app_test_for("plan_changes", "admin")
    next(t for t in at.text_input if t.label.startswith("Customer email")).input("evil.test")
    _click(at, "Look up")
    assert HOSTILE_EMAIL in at.dataframe[0].value.to_string()
    assert_inert(at, shows=[HOSTILE], in_markdown=True)  # "Pending downgrade to …"

    next(t for t in at.text_input if t.label.startswith("Customer email")).input(HOSTILE)
    _click(at, "Look up")
    assert_inert(at, shows=[HOSTILE], in_markdown=True)  # "No subscription … matches …"


def test_reconciliation_page_shows_drift_from_metadata_literally(metadata_runtime: Any) -> None:
    from services.reconciliation import run_reconciliation

    run_reconciliation(settings=metadata_runtime.settings, uow=metadata_runtime.uow(),
                       gateway=metadata_runtime.gateway, apply=False, actor="cli", trigger="manual")
    at = app_test_for("reconciliation", "admin")
    assert_inert(at, shows=[f"pending_plan={HOSTILE}"], in_markdown=False)  # the drift table
    _click(at, "Apply this fix…")
    assert any("sub\\_hostile" in body for body in markdown_bodies(at))  # the confirmation is open
    assert_inert(at, shows=[], in_markdown=False)


# --- webhooks, audit log, go-live checklist, QA notes, sign-in identities ---------------------
def test_webhooks_page_shows_event_fields_literally(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        raise RuntimeError(f"charge for {event['data']['object']['description']} broke it")

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.refunded", broken)
    event = {"id": "evt_hostile", "type": "charge.refunded", "created": int(time.time()),
             "data": {"object": {"id": "ch_x", "object": "charge", "description": HOSTILE,
                                 "billing_details": {"email": HOSTILE_EMAIL, "name": HOSTILE}}}}
    webhooks.ingest_event(runtime, event, process=True)
    monkeypatch.undo()
    with runtime.uow() as uow:
        stored = uow.session.get(StripeEvent, "evt_hostile")
        assert stored is not None and stored.status == "failed"
    at = app_test_for("webhooks", "admin")
    assert_inert(at, shows=[HOSTILE], in_markdown=False)  # the stored error, in the table
    _click(at, "Replay…")
    assert any("Run the handlers for" in body for body in markdown_bodies(at))
    assert_inert(at, shows=[], in_markdown=False)


def test_audit_page_shows_actors_and_targets_literally(shell_runtime: Any) -> None:  # noqa: F811
    with shell_runtime.uow() as uow:  # a sign-in attempt records the typed account unauthenticated
        audit.record(uow, actor=HOSTILE, action="sign_in.failed", result="denied", target=HOSTILE_EMAIL)
        uow.commit()
    at = app_test_for("audit", "admin")
    assert_inert(at, shows=[HOSTILE, HOSTILE_EMAIL], in_markdown=False)


def test_golive_and_qa_pages_show_notes_literally(runtime: Any, emulator: EmulatorHandle) -> None:
    st.cache_data.clear()  # the page caches its checklist read; an earlier test's would hide this DB's
    checklist.seed_checklist(runtime.uow())
    item = checklist.list_items(runtime.uow())[0]
    checklist.update_item(item["key"], owner=HOSTILE_EMAIL, status="open", note=HOSTILE, actor=ADMIN_EMAIL,
                          settings=runtime.settings, uow=runtime.uow())
    at = app_test_for("golive", "admin")
    assert_inert(at, shows=[HOSTILE, HOSTILE_EMAIL], in_markdown=False)

    qa_matrix.record_manual_result(qa_matrix.CASE_IDS[0], False, HOSTILE, actor=ADMIN_EMAIL,
                                   settings=runtime.settings, uow=runtime.uow())
    at = app_test_for("qa_matrix", "admin")
    assert_inert(at, shows=[HOSTILE], in_markdown=True)  # "Notes: …"


def test_no_access_page_and_sidebar_show_the_identity_literally(shell_runtime: Any) -> None:  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO_ROOT

    email = "*x*_[re-verify](http://evil.test/login)_@outside.io"
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=30)
    now = time.time()
    at.session_state["identity"] = Identity(email=email, name=HOSTILE, signed_in_at=now, last_seen_at=now)
    at.run()
    assert "No access" in page_text(at)
    assert_inert(at, shows=[email], in_markdown=True)


def test_signoff_page_shows_the_signers_note_literally(migrated_sqlite_url: str) -> None:
    from tests.apptest.test_golive_pages import _passed_results
    from tests.conftest import page_direct_test
    from tests.integration.golive_fixtures import ENG_LEAD, FakePreflightGateway, golive_settings, make_launch_ready

    runtime = Runtime(golive_settings(migrated_sqlite_url))
    runtime.__dict__["gateway"] = FakePreflightGateway()
    set_runtime(runtime)
    st.cache_data.clear()
    try:
        make_launch_ready(runtime)
        _passed_results(runtime)
        at = page_direct_test("signoff", ENG_LEAD)
        next(t for t in at.text_input if t.label == "Note (optional)").input(HOSTILE)
        next(b for b in at.button if b.label == "Sign off").click()
        at.run()
        assert "Signed as engineering lead" in page_text(at)
        st.cache_data.clear()
        at = page_direct_test("signoff", ENG_LEAD)
        assert_inert(at, shows=[HOSTILE, ENG_LEAD], in_markdown=True)  # the record's signature line
    finally:
        st.cache_data.clear()
        set_runtime(None)
