"""Dispute timeline, Visa CE 3.0 from the billing DB and analytics, against the emulator through
the real SDK, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, Charge, Dispute, DisputeEvidenceFile
from db.models.base import utcnow
from services import compelling_evidence as ce
from services import dispute_analytics as da
from services import dispute_queue, dispute_views, disputes, evidence_files
from services import dispute_timeline as dt
from services.sync import run_sync
from tests.conftest import ADMIN_EMAIL, EmulatorHandle


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


DAY = 86_400
IP = "198.51.100.23"
DEVICE = "device-0042-aa11-bb22-cc33"
PNG = _png()


def _kw(runtime: Any) -> dict[str, Any]:
    return {"actor": ADMIN_EMAIL, "settings": runtime.settings, "uow": runtime.uow(), "gateway": runtime.gateway}


def _long_time_customer(runtime: Any, tag: str, *, ip_later: str = IP) -> tuple[str, list[str]]:
    """A customer on a test clock: payments 250, 130 and 60 days before a CE 3.0 dispute (the last
    outside the 120-365 day window), each with the purchase IP and device recorded on the charge."""
    client = runtime.gateway.client
    now = int(time.time())
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": now - 300 * DAY})
    customer = client.v1.customers.create({"email": f"{tag}@example.io", "name": "Casey Longtime",
                                           "test_clock": clock.id, "metadata": {"user_id": f"user_{tag}"}})
    charges = []
    for days_ago, card, ip in ((250, "pm_card_visa", IP), (130, "pm_card_visa", IP), (60, "pm_card_visa", IP),
                               (1, "pm_card_createCe3EligibleDispute", ip_later)):
        client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": now - days_ago * DAY})
        intent = client.v1.payment_intents.create({
            "amount": 2900, "currency": "usd", "customer": customer.id, "payment_method": card, "confirm": True,
            "description": "Pro plan"})
        client.v1.charges.update(intent.latest_charge, {"metadata": {"ip": ip, "device_id": DEVICE}})
        charges.append(str(intent.latest_charge))
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": now - 60})  # back to the present
    run_sync(runtime, since=None, days=30)
    dispute = next(runtime.gateway.list_disputes(charge=charges[-1]))
    return str(dispute["id"]), charges


def test_ce3_prior_payments_qualify_are_staged_and_submitted(runtime_factory: Any, database_url: str,
                                                             emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    dispute_id, charges = _long_time_customer(runtime, "ce3")
    with runtime.uow() as uow:
        row = uow.session.get(Dispute, dispute_id)
        assert row is not None and ce.network_of(row) == ("visa", "10.4")
    assessment = ce.assess(runtime.uow(), dispute_id, test_mode=True)
    assert assessment.applies and assessment.qualifies, assessment.reasons
    # The 60-day-old payment is outside the window; the two in it are the pair.
    assert {p.charge_id for p in assessment.candidates} == set(charges[:2])
    assert {p.charge_id for p in assessment.pair or ()} == set(charges[:2])
    assert set(assessment.elements) >= {"customer_purchase_ip", "customer_device_id", "customer_account_id"}
    assert assessment.stripe_status == "requires_action"
    # Live mode also needs the same card: these priors were paid with another card.
    assert not ce.assess(runtime.uow(), dispute_id, test_mode=False).qualifies

    context = dispute_queue.get_context(runtime.uow(), dispute_id, runtime.gateway)
    disputes.save_draft(dispute_id, {**dispute_views.auto_draft(context, runtime.settings),
                                     "uncategorized_text": "winning_evidence"}, **_kw(runtime))
    disputes.upload_evidence_file(dispute_id, "receipt", "receipt.png", PNG, **_kw(runtime))
    staged = runtime.gateway.retrieve_dispute(dispute_id)
    ce3 = staged["evidence"]["enhanced_evidence"]["visa_compelling_evidence_3"]
    assert [p["charge"] for p in ce3["prior_undisputed_transactions"]] == charges[:2] or \
        {p["charge"] for p in ce3["prior_undisputed_transactions"]} == set(charges[:2])
    assert ce3["disputed_transaction"]["merchandise_or_services"] == "services"
    assert ce3["disputed_transaction"]["customer_purchase_ip"] == IP
    assert staged["evidence_details"]["enhanced_eligibility"]["visa_compelling_evidence_3"] == {
        "required_actions": [], "status": "qualified"}
    assert staged["status"] == "needs_response"

    disputes.submit_evidence(dispute_id, **_kw(runtime))
    submitted = runtime.gateway.retrieve_dispute(dispute_id)
    assert submitted["status"] == "under_review"
    assert submitted["evidence_details"]["enhanced_eligibility"]["visa_compelling_evidence_3"]["status"] == "qualified"
    with runtime.uow() as uow:
        audit = uow.session.execute(select(AuditLog).where(AuditLog.target == dispute_id,
                                                           AuditLog.action == "disputes.submit")).scalar_one()
        assert set(audit.details["ce3"]["prior_charges"]) == set(charges[:2])
        assert IP not in str(audit.details)  # the audit names charges and elements, never the values
        copy = uow.session.execute(select(DisputeEvidenceFile).where(
            DisputeEvidenceFile.dispute_id == dispute_id)).scalar_one()
        assert copy.content == PNG and copy.file_type == "png"

    # Stripe decides (winning_evidence); the webhooks/sync record it; the timeline reads it all.
    deadline = time.monotonic() + 5
    while runtime.gateway.retrieve_dispute(dispute_id)["status"] != "won" and time.monotonic() < deadline:
        time.sleep(0.05)
    run_sync(runtime, since=None, days=30)
    view = evidence_files.submitted_evidence(runtime.uow(), dispute_id)
    assert view.submitted and view.ce3_status == "qualified" and len(view.ce3_prior) == 2
    assert [(f.label, f.filename, f.content) for f in view.files] == [("Receipt", "receipt.png", PNG)]
    assert ("Additional information", "winning_evidence") in view.texts
    steps = dt.timeline(runtime.uow(), dispute_id)
    kinds = [s.kind for s in steps]
    assert kinds[0] == "opened" and "10.4" in steps[0].what and "Compelling Evidence" in steps[0].what
    for expected in ("funds_withdrawn", "staged", "submitted", "decision", "funds_reinstated"):
        assert expected in kinds, (expected, kinds)
    assert kinds.index("funds_withdrawn") < kinds.index("submitted") < kinds.index("decision")
    withdrawn = next(s for s in steps if s.kind == "funds_withdrawn")
    assert withdrawn.what == "Funds withdrawn: 29.00 USD (fee 15.00 USD)"
    ours = [s for s in steps if s.who == ADMIN_EMAIL]
    assert {s.what.split(":")[0] for s in ours} >= {"staged the evidence at Stripe (not submitted)",
                                                    "attached a file"}
    assert any("Visa CE 3.0" in s.what and s.who == ADMIN_EMAIL for s in steps)
    assert next(s for s in steps if s.kind == "decision").what.startswith("Won")


def test_ce3_needs_shared_identifiers_and_a_visa_10_4_dispute(runtime: Any) -> None:
    # The disputed payment came from another IP: one main element (device) plus account still qualifies.
    dispute_id, _ = _long_time_customer(runtime, "ce3ip", ip_later="192.0.2.99")
    assessment = ce.assess(runtime.uow(), dispute_id, test_mode=True)
    assert assessment.qualifies and "customer_purchase_ip" not in assessment.elements
    # Without the device either, only secondary elements are left: not enough.
    with runtime.uow() as uow:
        charge = uow.session.get(Charge, uow.session.get(Dispute, dispute_id).charge_id)
        charge.raw = {**charge.raw, "metadata": {"ip": "192.0.2.99"}}
        uow.commit()
    refused = ce.assess(runtime.uow(), dispute_id, test_mode=True)
    assert not refused.qualifies and "main" in refused.reasons[0]
    assert refused.enhanced_evidence() is None
    # An ordinary fraud dispute (no Visa 10.4) is not a CE 3.0 case at all.
    client = runtime.gateway.client
    customer = client.v1.customers.create({"email": "plain@example.io"})
    intent = client.v1.payment_intents.create({"amount": 1500, "currency": "usd", "customer": customer.id,
                                               "payment_method": "pm_card_createDispute", "confirm": True})
    run_sync(runtime, since=None, days=30)
    plain = next(runtime.gateway.list_disputes(payment_intent=intent.id))
    other = ce.assess(runtime.uow(), plain["id"], test_mode=True)
    assert not other.applies and "10.4" in other.reasons[0]


def test_analytics_win_rate_losses_time_to_respond_and_thresholds(runtime_factory: Any, database_url: str,
                                                                   emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    client = runtime.gateway.client
    ids = []
    for n, card in enumerate(["pm_card_createDispute"] * 3 + ["pm_card_visa"] * 5):
        customer = client.v1.customers.create({"email": f"an{n}@example.io"})
        intent = client.v1.payment_intents.create({"amount": 1000 + n, "currency": "usd", "customer": customer.id,
                                                   "payment_method": card, "confirm": True})
        ids.append(intent.id)
    run_sync(runtime, since=None, days=30)
    found = [d["id"] for d in runtime.gateway.list_disputes() if d["payment_intent"] in ids[:3]]
    won_id, lost_id, accepted_id = found
    for dispute_id, text in ((won_id, "winning_evidence"), (lost_id, "losing_evidence")):
        disputes.save_draft(dispute_id, {"uncategorized_text": text}, **_kw(runtime))
        disputes.submit_evidence(dispute_id, **_kw(runtime))
    disputes.accept_dispute(accepted_id, **_kw(runtime))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and {runtime.gateway.retrieve_dispute(i)["status"] for i in (won_id, lost_id)} \
            != {"won", "lost"}:
        time.sleep(0.05)
    run_sync(runtime, since=None, days=30)
    result = da.compute(runtime.uow())
    fraud = next(b for b in result.by_reason if b.key == "fraudulent")
    assert (fraud.won, fraud.lost) == (1, 2) and fraud.win_rate == pytest.approx(1 / 3)
    visa = next(b for b in result.by_network if b.key == "visa")
    assert visa.won == 1 and visa.lost == 2
    with runtime.uow() as uow:
        amounts = {d.id: d.amount for d in uow.session.execute(select(Dispute)).scalars()}
    assert result.amount_lost == {"usd": amounts[lost_id] + amounts[accepted_id]}
    assert result.amount_won == {"usd": amounts[won_id]}
    assert result.fees == {"usd": 3 * 1500}  # Stripe's dispute fee on each withdrawal
    assert len(result.respond_hours) == 3 and result.median_respond_hours is not None
    rate = next(r for r in result.rates if r.network == "visa")
    assert rate.disputes == 3 and rate.payments == 8 and rate.ratio == pytest.approx(3 / 8)
    assert any("over Visa VAMP excessive" in w and "1,500" in w for w in result.warnings)


def test_threshold_statuses_warn_before_crossing() -> None:
    vamp = next(p for p in da.PROGRAMMES if "VAMP" in p.name)
    assert da._status(vamp.ratio * 0.79, vamp) == "ok"
    assert da._status(vamp.ratio * 0.8, vamp) == "approaching"
    assert da._status(vamp.ratio, vamp) == "over"
    assert [p.ratio for p in da.PROGRAMMES if p.network != "all"] == [0.009, 0.01, 0.015, 0.015]
    assert utcnow() - timedelta(days=1) < utcnow()


def test_emulator_ce3_card_and_enhanced_evidence_rules(runtime: Any) -> None:
    """The emulator as Stripe documents its CE 3.0 test card: eligibility requires_action until the
    evidence qualifies; after submission qualified or not_qualified; bad input is a 400."""
    import stripe

    client = runtime.gateway.client
    customer = client.v1.customers.create({"email": "emu-ce3@example.io"})
    intent = client.v1.payment_intents.create({"amount": 2000, "currency": "usd", "customer": customer.id,
                                               "payment_method": "pm_card_createCe3EligibleDispute", "confirm": True})
    dispute = next(iter(client.v1.disputes.list({"payment_intent": intent.id}).data))
    assert dispute.enhanced_eligibility_types == ["visa_compelling_evidence_3"]
    assert dispute.payment_method_details.card.network_reason_code == "10.4"
    state = dispute.evidence_details.enhanced_eligibility.visa_compelling_evidence_3
    assert state.status == "requires_action" and "missing_prior_undisputed_transactions" in state.required_actions
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.disputes.update(dispute.id, {"evidence": {"enhanced_evidence": {"visa_compelling_evidence_3": {
            "disputed_transaction": {"merchandise_or_services": "gadgets"}}}}, "submit": False})
    assert bad.value.http_status == 400
    # Only secondary elements shared (email): staged as requires_action, submitted as not_qualified.
    weak = {"visa_compelling_evidence_3": {
        "disputed_transaction": {"customer_email_address": "a@example.io", "product_description": "Pro plan",
                                 "merchandise_or_services": "services"},
        "prior_undisputed_transactions": [
            {"charge": "ch_prior_1", "customer_email_address": "a@example.io", "product_description": "Pro plan"},
            {"charge": "ch_prior_2", "customer_email_address": "a@example.io", "product_description": "Pro plan"}]}}
    staged = client.v1.disputes.update(dispute.id, {"evidence": {"enhanced_evidence": weak}, "submit": False})
    state = staged.evidence_details.enhanced_eligibility.visa_compelling_evidence_3
    assert state.status == "requires_action" and state.required_actions == ["missing_customer_identifiers"]
    submitted = client.v1.disputes.update(dispute.id, {"submit": True})
    assert submitted.evidence_details.enhanced_eligibility.visa_compelling_evidence_3.status == "not_qualified"
    # A dispute from the ordinary dispute card is not eligible for CE 3.0 evidence at all.
    other = client.v1.payment_intents.create({"amount": 2000, "currency": "usd", "customer": customer.id,
                                              "payment_method": "pm_card_createDispute", "confirm": True})
    plain = next(iter(client.v1.disputes.list({"payment_intent": other.id}).data))
    assert plain.enhanced_eligibility_types == [] and plain.network_reason_code is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.update(plain.id, {"evidence": {"enhanced_evidence": weak}, "submit": False})


def test_warnings_name_the_programme_its_ratio_and_its_count() -> None:
    rate = da.NetworkRate("mastercard", "2026-12", disputes=120, fraud_warnings=0, payments=10_000, ratio=0.012,
                          dispute_ratio=0.012)
    rate.statuses = [(p, da._status(rate.ratio_for(p), p)) for p in da.PROGRAMMES if p.network in ("all", "mastercard")]
    assert [s for _p, s in rate.statuses] == ["over", "over", "approaching"]
    cmm, ecm = rate.warnings[1], rate.warnings[2]
    assert cmm.startswith("Mastercard 1.20 % is over Mastercard Chargeback Monitored Merchant (1 %)")
    assert "also reaches its count of 100" in cmm
    assert ecm.startswith("Mastercard 1.20 % is approaching Mastercard Excessive Chargeback Merchant (1.5 %)")
    below = da.NetworkRate("visa", "2026-12", disputes=3, fraud_warnings=2, payments=100, ratio=0.05,
                           dispute_ratio=0.03)
    below.statuses = [(p, da._status(below.ratio_for(p), p)) for p in da.PROGRAMMES if p.network in ("all", "visa")]
    vamp = next(w for w in below.warnings if "VAMP" in w)
    assert vamp.startswith("Visa 5.00 % is over") and "needs 1,500 a month and this month has 5" in vamp
    assert next(w for w in below.warnings if "VDMP" in w).startswith("Visa 3.00 %")  # disputes only


def test_timeline_shows_an_inquiry_becoming_a_chargeback(runtime: Any, emulator: EmulatorHandle) -> None:
    client = runtime.gateway.client
    customer = client.v1.customers.create({"email": "inquiry@example.io"})
    intent = client.v1.payment_intents.create({"amount": 3100, "currency": "usd", "customer": customer.id,
                                               "payment_method": "pm_card_createDisputeInquiry", "confirm": True})
    inquiry = next(iter(client.v1.disputes.list({"payment_intent": intent.id}).data))
    assert inquiry.status == "warning_needs_response" and inquiry.payment_method_details.card.case_type == "inquiry"
    escalated = emulator.admin(f"disputes/{inquiry.id}/escalate", {})
    assert escalated["status"] == "needs_response" and escalated["payment_method_details"]["card"]["case_type"] \
        == "chargeback"
    emulator.flush_webhooks()
    run_sync(runtime, since=None, days=30)
    steps = dt.timeline(runtime.uow(), inquiry.id)
    assert [s.kind for s in steps] == ["opened", "escalated", "funds_withdrawn"]
    assert steps[0].what.startswith("Opened as an inquiry: 31.00 USD")
    assert steps[1].what == "The inquiry became a chargeback"
    with runtime.uow() as uow:
        assert uow.session.get(Dispute, inquiry.id).status == "needs_response"


def _pdf(pages: int = 2) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    first, *rest = [Image.new("RGB", (600, 800), (255, 255, 255 - 40 * n)) for n in range(pages)]
    first.save(buffer, format="PDF", save_all=True, append_images=rest)
    return buffer.getvalue()


def test_submitted_evidence_previews_pdf_first_pages(runtime: Any, emulator: EmulatorHandle) -> None:
    from tests.integration.test_disputes import _dispute

    dispute_id = _dispute(runtime, "pdf-preview@example.io")
    real, junk = _pdf(2), b"%PDF-1.4\n" + b"not really a pdf " * 40
    disputes.upload_evidence_file(dispute_id, "receipt", "receipt.pdf", real, **_kw(runtime))
    disputes.upload_evidence_file(dispute_id, "service_documentation", "scan.pdf", junk, **_kw(runtime))
    assert not evidence_files.submitted_evidence(runtime.uow(), dispute_id).submitted  # nothing sent yet
    disputes.save_draft(dispute_id, {"uncategorized_text": "Service delivered"}, **_kw(runtime))
    disputes.submit_evidence(dispute_id, **_kw(runtime))
    view = evidence_files.submitted_evidence(runtime.uow(), dispute_id)
    files = {f.filename: f for f in view.files}
    assert set(files) == {"receipt.pdf", "scan.pdf"}
    receipt = files["receipt.pdf"]
    assert receipt.pages == 2 and receipt.content == real and receipt.mime == "application/pdf"
    assert receipt.preview_png is not None and receipt.preview_png.startswith(b"\x89PNG")
    from PIL import Image

    assert Image.open(io.BytesIO(receipt.preview_png)).size[0] == evidence_files.PREVIEW_WIDTH_PX
    assert files["scan.pdf"].preview_png is None and files["scan.pdf"].content == junk


def test_ce3_window_is_120_to_365_days_inclusive_and_excludes_disputed_refunded_or_warned(
        runtime_factory: Any, database_url: str) -> None:
    from db.models import Customer, FraudWarning

    runtime = runtime_factory(DATABASE_URL=database_url)
    disputed_at = utcnow().replace(microsecond=0) - timedelta(days=2)
    meta = {"ip": IP, "device_id": DEVICE}

    def charge(charge_id: str, days: int, **extra: Any) -> Charge:
        return Charge(id=charge_id, stripe_customer_id="cus_window", amount=2900, currency="usd",
                      status="succeeded", paid=True, card_fingerprint="fp_same", card_brand="visa",
                      created=disputed_at - timedelta(days=days), raw={"metadata": meta}, **extra)

    with runtime.uow() as uow:
        uow.session.add(Customer(id="cus_window", email="w@example.io", user_id="user_w", raw={}))
        uow.session.add_all([
            charge("ch_disputed", 0, disputed=True), charge("ch_119", 119), charge("ch_120", 120),
            charge("ch_365", 365), charge("ch_366", 366), charge("ch_200_disputed", 200),
            charge("ch_210_refunded", 210, amount_refunded=2900), charge("ch_220_efw", 220),
            charge("ch_230_other_card", 230), charge("ch_240_failed", 240)])
        uow.session.flush()
        uow.session.get(Charge, "ch_230_other_card").card_fingerprint = "fp_other"
        uow.session.get(Charge, "ch_240_failed").status = "failed"
        uow.session.add(Dispute(id="dp_window", charge_id="ch_disputed", stripe_customer_id="cus_window",
                                amount=2900, currency="usd", reason="fraudulent", status="needs_response",
                                created=disputed_at, raw={"network_reason_code": "10.4", "payment_method_details": {
                                    "type": "card", "card": {"brand": "visa", "network_reason_code": "10.4"}}}))
        uow.session.add(Dispute(id="dp_old", charge_id="ch_200_disputed", amount=2900, currency="usd",
                                status="won", raw={}))
        uow.session.add(FraudWarning(id="issfr_window", charge_id="ch_220_efw", raw={}))
        uow.commit()
    live = ce.assess(runtime.uow(), "dp_window", test_mode=False)
    assert [p.charge_id for p in live.candidates] == ["ch_120", "ch_365"]
    assert live.qualifies and set(live.elements) == {"customer_purchase_ip", "customer_device_id",
                                                     "customer_email_address", "customer_account_id"}
    # In test mode only the payment method is relaxed (as in Stripe's test environment).
    relaxed = ce.assess(runtime.uow(), "dp_window", test_mode=True)
    assert [p.charge_id for p in relaxed.candidates] == ["ch_120", "ch_230_other_card", "ch_365"]


def test_ce3_element_rule_device_fingerprint_and_id_count_once() -> None:
    assert not ce.elements_qualify(["customer_device_fingerprint", "customer_device_id"])
    assert ce.elements_qualify(["customer_device_fingerprint", "customer_purchase_ip"])
    assert ce.elements_qualify(["customer_device_id", "customer_account_id"])  # Stripe's own example
    assert not ce.elements_qualify(["customer_email_address", "customer_account_id", "shipping_address"])
    payment = ce.Payment("ch_1", None, 100, "usd", "Pro plan", customer_purchase_ip=IP,
                         customer_device_id=DEVICE, customer_device_fingerprint="f" * 24,
                         customer_email_address="a@example.io", customer_account_id="user_1")
    sent = payment.as_evidence(prior=True, elements={"customer_device_id", "customer_device_fingerprint",
                                                    "customer_account_id"})
    assert sent == {"charge": "ch_1", "product_description": "Pro plan",
                    "customer_device_fingerprint": "f" * 24, "customer_account_id": "user_1"}
    only_id = payment.as_evidence(prior=False, elements={"customer_device_id", "customer_email_address"})
    assert only_id == {"product_description": "Pro plan", "merchandise_or_services": "services",
                       "customer_device_id": DEVICE, "customer_email_address": "a@example.io"}
