"""Disputes against the emulator: draft twice then submit once; every refusal sends nothing;
winning evidence wins via webhooks; accept; double clicks act once. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, Dispute
from db.models.base import utcnow
from services import dispute_evidence as ev
from services import dispute_queue, dispute_views, disputes
from services.sync import run_sync
from tests.conftest import ADMIN_EMAIL, EmulatorHandle

PDF = b"%PDF-1.4\n" + b"receipt " * 100


def _dispute(runtime: Any, email: str = "buyer@example.io") -> str:
    gateway = runtime.gateway
    customer = gateway.create_customer({"email": email, "name": "Bea Buyer"}, idempotency_key=f"c-{email}")
    intent = gateway.client.v1.payment_intents.create({"amount": 4900, "currency": "usd", "customer": customer["id"],
                                                       "payment_method": "pm_card_createDispute", "confirm": True})
    run_sync(runtime, since=None, days=30)
    return str(next(gateway.list_disputes(payment_intent=intent.id))["id"])


def _kw(runtime: Any) -> dict[str, Any]:
    return {"actor": ADMIN_EMAIL, "settings": runtime.settings, "uow": runtime.uow(), "gateway": runtime.gateway}


def _posts(emulator: EmulatorHandle, dispute_id: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["method"] == "POST" and dispute_id in r["path"]]


def test_draft_twice_then_submit_once(runtime: Any, emulator: EmulatorHandle) -> None:
    dispute_id = _dispute(runtime)
    context = dispute_queue.get_context(runtime.uow(), dispute_id, runtime.gateway)
    draft = dispute_views.auto_draft(context, runtime.settings)
    assert draft["customer_email_address"] == "buyer@example.io" and draft["customer_name"] == "Bea Buyer"
    assert draft["refund_policy_disclosure"] == runtime.settings.refund_policy_text
    emulator.clear_requests()
    disputes.save_draft(dispute_id, draft, **_kw(runtime))
    disputes.upload_evidence_file(dispute_id, "receipt", "receipt.pdf", PDF, **_kw(runtime))
    disputes.save_draft(dispute_id, {**draft, "uncategorized_text": "winning_evidence"}, **_kw(runtime))
    staged = runtime.gateway.retrieve_dispute(dispute_id)
    assert staged["status"] == "needs_response" and staged["evidence_details"]["submission_count"] == 0
    assert staged["evidence"]["receipt"].startswith("file_")
    disputes.submit_evidence(dispute_id, **_kw(runtime))
    submitted = runtime.gateway.retrieve_dispute(dispute_id)
    assert submitted["evidence_details"]["submission_count"] == 1
    keys = [r["idempotency_key"] for r in _posts(emulator, dispute_id)]
    assert keys == [f"dispute-evidence:{dispute_id}:v1", f"dispute-evidence:{dispute_id}:v2",
                    f"dispute-submit:{dispute_id}"]
    with pytest.raises(disputes.DisputeActionError):
        disputes.save_draft(dispute_id, draft, **_kw(runtime))  # read-only after submitting
    # winning_evidence: Stripe decides, the webhook/sync path records the win.
    deadline = time.monotonic() + 5
    while runtime.gateway.retrieve_dispute(dispute_id)["status"] != "won" and time.monotonic() < deadline:
        time.sleep(0.05)
    run_sync(runtime, since=None, days=1)
    with runtime.uow() as uow:
        assert uow.session.get(Dispute, dispute_id).status == "won"  # type: ignore[union-attr]


@pytest.mark.parametrize("situation", ["past_due", "closed", "too_long", "bad_type", "too_big"])
def test_refusals_send_nothing(runtime: Any, emulator: EmulatorHandle, situation: str) -> None:
    dispute_id = _dispute(runtime, f"{situation}@example.io")
    fields = {"uncategorized_text": "Service delivered"}
    if situation == "past_due":
        with runtime.uow() as uow:
            uow.session.get(Dispute, dispute_id).due_by = utcnow() - timedelta(hours=1)  # type: ignore[union-attr]
            uow.commit()
    elif situation == "closed":
        with runtime.uow() as uow:
            uow.session.get(Dispute, dispute_id).status = "lost"  # type: ignore[union-attr]
            uow.commit()
    elif situation == "too_long":
        fields = {"uncategorized_text": "x" * (ev.TEXT_LIMIT + 1)}
    emulator.clear_requests()
    with pytest.raises(disputes.DisputeActionError) as caught:
        if situation == "bad_type":
            disputes.upload_evidence_file(dispute_id, "receipt", "receipt.pdf", b"MZ not a pdf", **_kw(runtime))
        elif situation == "too_big":
            disputes.upload_evidence_file(dispute_id, "receipt", "big.pdf", b"%PDF-" + b"0" * (6 * 1024 * 1024),
                                          **_kw(runtime))
        else:
            disputes.save_draft(dispute_id, fields, **_kw(runtime))
    assert caught.value.message
    assert [r for r in emulator.requests() if r["method"] == "POST"] == []
    with pytest.raises(disputes.DisputeActionError):
        disputes.submit_evidence(dispute_id, **_kw(runtime))
    assert [r for r in emulator.requests() if r["method"] == "POST"] == []


def test_accept_closes_it(runtime: Any) -> None:
    dispute_id = _dispute(runtime)
    row = disputes.accept_dispute(dispute_id, **_kw(runtime))
    assert row.status == "lost" and row.accepted_by == ADMIN_EMAIL
    assert runtime.gateway.retrieve_dispute(dispute_id)["status"] == "lost"


@pytest.mark.parametrize("action", ["submit", "accept"])
def test_double_click_acts_once(runtime_factory: Any, database_url: str, emulator: EmulatorHandle,
                                action: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    dispute_id = _dispute(runtime, f"double-{action}@example.io")
    disputes.save_draft(dispute_id, {"uncategorized_text": "Service delivered"}, **_kw(runtime))
    emulator.clear_requests()
    results: list[str] = []
    barrier = threading.Barrier(2)

    def click() -> None:
        barrier.wait()
        try:
            (disputes.submit_evidence if action == "submit" else disputes.accept_dispute)(dispute_id, **_kw(runtime))
            results.append("ok")
        except disputes.DisputeActionError:
            results.append("refused")

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ok", "refused"]
    assert len(_posts(emulator, dispute_id)) == 1
    with runtime.uow() as uow:
        rows = uow.session.execute(select(AuditLog).where(AuditLog.action == f"disputes.{action}")).scalars().all()
    assert [r.result for r in rows] == ["ok"]


def test_queue_filters_counts_and_rate(runtime: Any, emulator: EmulatorHandle) -> None:
    emulator.admin("seed", {"customers": 40, "seed": 2})
    run_sync(runtime, since=None, days=30)
    queue = dispute_queue.list_queue(runtime.uow(), dispute_queue.DisputeFilter(statuses=dispute_queue.OPEN_STATUSES))
    assert queue.rows and all(d.status in dispute_queue.OPEN_STATUSES for d in queue.rows)
    due = [d.due_by for d in queue.rows]
    assert due == sorted(due)  # most urgent first
    assert queue.overdue >= 1 and queue.at_risk.get("usd", 0) == sum(d.amount for d in queue.rows)
    fraud = dispute_queue.list_queue(runtime.uow(), dispute_queue.DisputeFilter(reasons=("fraudulent",)))
    assert all(d.reason == "fraudulent" for d in fraud.rows)
    paged = dispute_queue.list_queue(runtime.uow(), dispute_queue.DisputeFilter(limit=3, offset=3))
    everything = dispute_queue.list_queue(runtime.uow(), dispute_queue.DisputeFilter())
    assert len(paged.rows) <= 3 and paged.total == everything.total
    series = dispute_queue.dispute_rate_series(runtime.uow(), days=3)
    assert len(series) == 3 and series[-1]["charges"] > 0 and 0 < series[-1]["rate"] < 1


def test_overdue_dispute_is_read_only_and_every_change_is_an_audited_refusal(
    runtime_factory: Any, database_url: str, emulator: EmulatorHandle
) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    dispute_id = _dispute(runtime, "late@example.io")
    due = utcnow() - timedelta(hours=2)
    with runtime.uow() as uow:
        row = uow.session.get(Dispute, dispute_id)
        assert row is not None
        row.due_by = due  # evidence_details.due_by has passed
        uow.commit()
        reason = disputes.read_only_reason(row, utcnow())
    assert reason is not None and reason.startswith("Overdue, read-only: the evidence was due by")
    emulator.clear_requests()
    for attempt in (lambda: disputes.save_draft(dispute_id, {"uncategorized_text": "late"}, **_kw(runtime)),
                    lambda: disputes.upload_evidence_file(dispute_id, "receipt", "r.pdf", PDF, **_kw(runtime)),
                    lambda: disputes.submit_evidence(dispute_id, **_kw(runtime))):
        with pytest.raises(disputes.DisputeActionError, match="no longer accepts"):
            attempt()
    assert [r for r in emulator.requests() if r["method"] == "POST"] == []
    with runtime.uow() as uow:
        refused = [(a.action, a.result, a.actor) for a in uow.session.execute(
            select(AuditLog).where(AuditLog.target == dispute_id).order_by(AuditLog.id)).scalars()]
    assert refused == [("disputes.save_draft", "refused", ADMIN_EMAIL),
                       ("disputes.upload_file", "refused", ADMIN_EMAIL),
                       ("disputes.submit", "refused", ADMIN_EMAIL)]


def test_submission_reads_in_words_and_the_history_says_who_sent_what(runtime: Any, emulator: EmulatorHandle) -> None:
    dispute_id = _dispute(runtime, "words@example.io")
    disputes.save_draft(dispute_id, {"product_description": "Pro plan, monthly", "uncategorized_text": "Used daily"},
                        **_kw(runtime))
    disputes.upload_evidence_file(dispute_id, "receipt", "receipt-march.pdf", PDF, **_kw(runtime))
    lines = dispute_views.submission_summary(runtime.uow(), dispute_id)
    shown = {line.label: line.value for line in lines}
    assert shown["Product description"] == "Pro plan, monthly" and shown["Receipt"].startswith("receipt-march.pdf (")
    assert not any("file_" in line.value for line in lines)
    disputes.submit_evidence(dispute_id, **_kw(runtime))
    history = dispute_views.evidence_history(runtime.uow(), dispute_id)
    assert history[0]["who"] == ADMIN_EMAIL and history[0]["result"] == "done"
    assert history[0]["what"].startswith("submitted the evidence: ")
    assert "Product description" in history[0]["what"] and "Receipt (receipt-march.pdf)" in history[0]["what"]
    assert [h["what"].split(":")[0] for h in history[1:]] == ["attached a file", "saved the draft"]
