"""The disputes page per role: queue, filters, detail, draft, confirm-then-submit, accept."""

from __future__ import annotations

from typing import Any

from db.models import Dispute
from tests.conftest import EmulatorHandle, app_test_for, page_direct_test, page_text
from tests.integration.test_disputes import _dispute


def _click(at: Any, label: str) -> None:
    exact = [b for b in at.button if b.label == label]
    (exact or [b for b in at.button if b.label.startswith(label)])[0].click()
    at.run()


def test_queue_detail_draft_and_submit(runtime: Any, emulator: EmulatorHandle) -> None:
    dispute_id = _dispute(runtime, "page-buyer@example.io")
    at = app_test_for("disputes", "admin")
    assert not at.exception
    text = page_text(at)
    assert dispute_id in at.dataframe[0].value.to_string() and "49.00 USD" in text
    assert "First draft filled in" in text
    email_box = [t for t in at.text_input if t.label == "Customer email"][0]
    assert email_box.value == "page-buyer@example.io"
    _click(at, "Save draft")
    assert "Draft saved and staged" in page_text(at)
    _click(at, "Submit evidence…")
    assert "can be submitted only once" in page_text(at)
    _click(at, "Submit evidence")
    assert "under review" in page_text(at)
    with runtime.uow() as uow:
        assert uow.session.get(Dispute, dispute_id).status == "under_review"  # type: ignore[union-attr]


def test_accept_with_confirmation(runtime: Any, emulator: EmulatorHandle) -> None:
    dispute_id = _dispute(runtime, "accept-buyer@example.io")
    at = app_test_for("disputes", "admin")
    _click(at, "Accept dispute")
    assert "gives up **49.00 USD**" in page_text(at)
    _click(at, "Accept and lose")
    assert "Dispute accepted and closed." in page_text(at)
    assert runtime.gateway.retrieve_dispute(dispute_id)["status"] == "lost"


def test_filters_and_empty_state(runtime: Any, emulator: EmulatorHandle) -> None:
    _dispute(runtime, "filter-buyer@example.io")
    at = app_test_for("disputes", "admin")
    [t for t in at.text_input if t.label == "Customer email contains"][0].input("nobody@")
    _click(at, "Apply filters")
    assert "No disputes match these filters." in page_text(at)


def test_other_roles_see_nothing(runtime: Any, emulator: EmulatorHandle) -> None:
    _dispute(runtime, "hidden@example.io")
    for role in ("non_admin", "signed_out"):
        at = page_direct_test("disputes", role)
        assert "No access" in page_text(at) and not at.dataframe and "hidden@example.io" not in page_text(at)
