"""Disputes page (network line, CE 3.0 panel, guided form, timeline, submitted evidence with
previews) and the dispute analytics page, for each role."""

from __future__ import annotations

from typing import Any

from tests.conftest import EmulatorHandle, app_test_for, page_direct_test, page_text
from tests.integration.test_dispute_depth import PNG, _kw, _long_time_customer


def _click(at: Any, label: str) -> None:
    exact = [b for b in at.button if b.label == label]
    (exact or [b for b in at.button if b.label.startswith(label)])[0].click()
    at.run()


def test_ce3_dispute_shows_network_eligibility_timeline_and_submitted_evidence(
        runtime: Any, emulator: EmulatorHandle) -> None:
    from services import disputes

    dispute_id, charges = _long_time_customer(runtime, "page-ce3")
    disputes.upload_evidence_file(dispute_id, "receipt", "receipt.png", PNG, **_kw(runtime))
    at = app_test_for("disputes", "admin")
    assert not at.exception
    text = page_text(at)
    assert "Visa" in text and "reason code** 10.4" in text and "case** chargeback" in text
    assert "Eligible: two prior undisputed payments share" in text
    pair = next(df.value for df in at.dataframe if "days before" in df.value.columns)
    assert set(pair["charge"]) == set(charges[:2])
    assert "What matters for fraudulent" in text and "Other evidence fields" in [e.label for e in at.expander]
    timeline = next(df.value for df in at.dataframe if "when" in df.value.columns and "result" in df.value.columns
                    and df.value["what"].str.startswith("Opened").any())
    assert timeline.iloc[0]["what"].startswith("Opened as a chargeback")
    assert "Stripe: needs more evidence" in text
    _click(at, "Save draft")
    assert "Stripe: qualified" in page_text(at)
    _click(at, "Submit evidence…")
    _click(at, "Submit evidence")
    assert not at.exception and "under review" in page_text(at)
    next(m for m in at.multiselect if m.label == "Status").set_value(["under_review"])
    _click(at, "Apply filters")
    text = page_text(at)
    assert "Submitted evidence" in [e.label for e in at.expander]
    assert "receipt.png · PNG" in text and "Visa CE 3.0: qualified" in text
    assert at.get("image")  # the PNG preview
    assert any(b.label == "Download receipt" for b in at.get("download_button"))
    steps = next(df.value for df in at.dataframe if "what" in df.value.columns
                 and df.value["what"].str.contains("with Visa CE 3.0").any())
    assert "admin@example.com" in set(steps["who"])


def test_analytics_page_for_admin(runtime: Any, emulator: EmulatorHandle) -> None:
    from services import disputes

    dispute_id, _ = _long_time_customer(runtime, "page-analytics")
    disputes.accept_dispute(dispute_id, **_kw(runtime))
    at = app_test_for("dispute_analytics", "admin")
    assert not at.exception
    text = page_text(at)
    assert "Dispute analytics" in text and "29.00 USD" in text  # the accepted dispute is lost
    assert "Time to respond (median)" in text
    programmes = next(df.value for df in at.dataframe if "programme" in df.value.columns)
    assert {"Visa VAMP excessive", "Mastercard Excessive Chargeback Merchant"} <= set(programmes["programme"])
    assert "over Visa VAMP excessive" in text  # 1 dispute on 4 Visa payments this month at most
    by_reason = next(df.value for df in at.dataframe if "reason" in df.value.columns)
    assert by_reason.iloc[0]["reason"] == "fraudulent" and by_reason.iloc[0]["win rate"] == "0 %"


def test_analytics_page_gated_for_other_roles(shell_runtime: Any) -> None:
    for role in ("non_admin", "signed_out"):
        direct = page_direct_test("dispute_analytics", role)
        assert "No access" in page_text(direct) and not direct.dataframe and not direct.metric
        nav = app_test_for("dispute_analytics", role)
        assert not nav.dataframe and "Dispute analytics" not in [t.value for t in nav.title]


def test_analytics_page_empty_for_admin(shell_runtime: Any) -> None:
    at = app_test_for("dispute_analytics", "admin")
    assert not at.exception
    text = page_text(at)
    assert "no responses yet" in text and "below the console's early warning" in text


def test_submitted_pdf_shows_its_first_page(runtime: Any, emulator: EmulatorHandle) -> None:
    from services import disputes
    from tests.integration.test_dispute_depth import _pdf
    from tests.integration.test_disputes import _dispute

    dispute_id = _dispute(runtime, "pdf-page@example.io")
    disputes.upload_evidence_file(dispute_id, "receipt", "receipt.pdf", _pdf(3), **_kw(runtime))
    disputes.save_draft(dispute_id, {"uncategorized_text": "Service delivered"}, **_kw(runtime))
    disputes.submit_evidence(dispute_id, **_kw(runtime))
    at = app_test_for("disputes", "admin")
    next(m for m in at.multiselect if m.label == "Status").set_value(["under_review"])
    _click(at, "Apply filters")
    assert not at.exception
    text = page_text(at)
    assert "receipt.pdf · PDF" in text and "PDF, 3 pages; the first is shown." in text
    assert at.get("image") and any(b.label == "Download receipt" for b in at.get("download_button"))
