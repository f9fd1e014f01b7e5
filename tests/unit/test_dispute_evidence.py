"""Pure rules of dispute evidence: the field catalogue, guidance, file and text checks, urgency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services import dispute_evidence as ev
from services.dispute_queue import urgency

STRIPE_EVIDENCE_FIELDS = {
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation",
    "duplicate_charge_explanation", "duplicate_charge_id", "product_description", "receipt", "refund_policy",
    "refund_policy_disclosure", "refund_refusal_explanation", "service_date", "service_documentation",
    "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation",
    "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
}


def test_catalogue_covers_every_stripe_field_once() -> None:
    names = [f.name for fields in ev.GROUPS.values() for f in fields]
    assert len(names) == len(set(names))
    assert set(names) >= STRIPE_EVIDENCE_FIELDS
    assert {"customer_signature", "receipt", "refund_policy", "uncategorized_file"} <= set(ev.FILE_FIELDS)
    assert "uncategorized_text" in ev.TEXT_FIELDS and "receipt" not in ev.TEXT_FIELDS


def test_guidance_per_reason_names_real_fields() -> None:
    for reason in ("fraudulent", "subscription_canceled", "product_not_received", "duplicate",
                   "credit_not_processed", "product_unacceptable", "general", "unrecognized"):
        text, fields = ev.guidance_for(reason)
        assert text and fields and set(fields) <= set(ev.ALL_FIELDS), reason
    assert ev.guidance_for(None) == ev.guidance_for("general")
    assert ev.guidance_for("something_new") == ev.guidance_for("general")


def test_files_are_judged_by_magic_bytes_and_size() -> None:
    assert ev.file_type(b"%PDF-1.7 rest") == "pdf"
    assert ev.file_type(b"\xff\xd8\xff\xe0jpeg") == "jpg"
    assert ev.file_type(b"\x89PNG\r\n\x1a\nrest") == "png"
    assert ev.file_type(b"MZ\x90\x00 an .exe named receipt.pdf") is None
    assert ev.check_file(b"%PDF-1.4 ok") is None
    assert "PDF, JPEG or PNG" in (ev.check_file(b"GIF89a") or "")
    too_big = b"%PDF-" + b"x" * ev.FILE_MAX_BYTES
    assert "5 MB" in (ev.check_file(too_big) or "")
    assert ev.check_file(b"%PDF-" + b"x" * (ev.FILE_MAX_BYTES - 5)) is None


def test_text_limit_is_combined_and_exact() -> None:
    half = "a" * (ev.TEXT_LIMIT // 2)
    assert ev.check_text({"product_description": half, "uncategorized_text": half}) is None
    message = ev.check_text({"product_description": half, "uncategorized_text": half + "b"})
    assert message and "150,000" in message
    assert "Unknown evidence field" in (ev.check_text({"not_a_field": "x"}) or "")


def test_urgency_bands() -> None:
    now = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert urgency(now - timedelta(hours=1), "needs_response", now) == "overdue"
    assert urgency(now + timedelta(hours=10), "needs_response", now) == "due in 24 h"
    assert urgency(now + timedelta(hours=48), "warning_needs_response", now) == "due in 72 h"
    assert urgency(now + timedelta(days=10), "needs_response", now) == ""
    assert urgency(now - timedelta(hours=1), "won", now) == ""
    assert urgency(None, "needs_response", now) == ""
