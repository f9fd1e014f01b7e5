"""The disputes page per role: queue, filters, detail, draft, confirm-then-submit, accept."""

from __future__ import annotations

from typing import Any

from db.models import Dispute
from services import dispute_queue, disputes
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
    assert {m.label: m.value for m in at.metric}["Open"] == "1"
    _click(at, "Accept dispute")
    assert "gives up **49.00 USD**" in page_text(at)
    _click(at, "Accept and lose")
    assert "Dispute accepted and closed." in page_text(at)
    assert runtime.gateway.retrieve_dispute(dispute_id)["status"] == "lost"
    # The queue is cached between reruns; the action cleared it, so the closed dispute left the open queue at once.
    assert "No disputes match these filters." in page_text(at)


def test_a_rerun_reads_the_live_charge_once_and_an_action_reads_it_again(runtime: Any,
                                                                        emulator: EmulatorHandle) -> None:
    dispute_id = _dispute(runtime, "cached-buyer@example.io")
    charge_id = runtime.gateway.retrieve_dispute(dispute_id)["charge"]
    emulator.clear_requests()

    def charge_reads() -> int:
        return sum(1 for r in emulator.requests() if r["method"] == "GET" and r["path"] == f"/v1/charges/{charge_id}")

    at = app_test_for("disputes", "admin")
    at.run()
    at.run()
    assert not at.exception and charge_reads() == 1
    _click(at, "Save draft")
    assert "Draft saved and staged" in page_text(at) and charge_reads() == 2


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


def test_submit_confirmation_reads_in_words_and_the_history_shows_it(runtime: Any, emulator: EmulatorHandle) -> None:
    from tests.integration.test_disputes import PDF, _kw

    dispute_id = _dispute(runtime, "words-buyer@example.io")
    disputes.upload_evidence_file(dispute_id, "receipt", "receipt-march.pdf", PDF, **_kw(runtime))
    at = app_test_for("disputes", "admin")
    _click(at, "Save draft")
    _click(at, "Submit evidence…")
    assert not at.exception
    dialog = "\n".join(str(t.value) for t in at.text)
    assert "Customer: Bea Buyer <words-buyer@example.io>" in dialog
    assert "Deadline: " in dialog and " UTC" in dialog
    assert "File — Receipt: receipt-march.pdf (" in dialog
    assert "Customer email: words-buyer@example.io" in dialog  # field label, not customer_email_address
    assert "**49.00 USD** dispute" in page_text(at)
    assert "file_" not in page_text(at) and not at.get("json")
    assert runtime.gateway.retrieve_dispute(dispute_id)["evidence_details"]["submission_count"] == 0
    _click(at, "Submit evidence")
    assert "under review" in page_text(at)
    next(m for m in at.multiselect if m.label == "Status").set_value(["under_review"])
    _click(at, "Apply filters")
    history = next(df.value for df in at.dataframe if "who" in df.value.columns)
    assert history.iloc[0]["who"] == "admin@example.com"
    assert history.iloc[0]["what"].startswith("submitted the evidence: ")
    assert "Receipt (receipt-march.pdf)" in history.iloc[0]["what"]
    assert "Read-only: evidence was submitted" in page_text(at)


def test_overdue_dispute_is_read_only_with_the_reason_at_the_top(runtime: Any, emulator: EmulatorHandle) -> None:
    from datetime import timedelta

    from db.models.base import utcnow

    dispute_id = _dispute(runtime, "late-buyer@example.io")
    with runtime.uow() as uow:
        uow.session.get(Dispute, dispute_id).due_by = utcnow() - timedelta(hours=3)  # type: ignore[union-attr]
        uow.commit()
    at = app_test_for("disputes", "admin")
    assert not at.exception
    [warning] = [w.value for w in at.warning if "Overdue" in str(w.value)]
    assert warning.startswith("Overdue, read-only: the evidence was due by")
    assert all(t.disabled for t in at.text_input if t.label == "Customer email")
    assert not [b for b in at.button if b.label.startswith("Submit evidence")]
    assert [b for b in at.button if b.label == "Save draft"][0].disabled


def _dispute_for(runtime: Any, email: str, name: str, key: str) -> str:
    gateway = runtime.gateway
    customers = list(gateway.client.v1.customers.list({"email": email}).data)
    customer = customers[0] if customers else gateway.create_customer({"email": email, "name": name},
                                                                      idempotency_key=f"c-{email}")
    intent = gateway.client.v1.payment_intents.create(
        {"amount": 4900, "currency": "usd", "customer": customer["id"], "payment_method": "pm_card_createDispute",
         "confirm": True}, {"idempotency_key": key})
    from services.sync import run_sync

    run_sync(runtime, since=None, days=30)
    return str(next(gateway.list_disputes(payment_intent=intent.id))["id"])


def test_other_disputes_split_by_customer_and_card_and_tiles_follow_filters(runtime: Any,
                                                                           emulator: EmulatorHandle) -> None:
    first = _dispute_for(runtime, "ann@example.io", "Ann Again", "pi-ann-1")
    second = _dispute_for(runtime, "ann@example.io", "Ann Again", "pi-ann-2")
    other = _dispute_for(runtime, "cora@example.io", "**Cora** <b>Other</b>", "pi-cora-1")
    context = dispute_queue.get_context(runtime.uow(), first, None)
    assert [d.id for d in context.same_customer_disputes] == [second]
    assert [(d.dispute.id, d.customer_label) for d in context.same_card_disputes] == [
        (other, "**Cora** <b>Other</b> <cora@example.io>")]

    at = app_test_for("disputes", "admin")
    [t for t in at.text_input if t.label == "Customer email contains"][0].input("ann@")
    _click(at, "Apply filters")
    tiles = {x.label: x.value for x in at.metric}
    assert tiles["Open"] == "2" and tiles["Amount at risk"] == "98.00 USD"  # Cora's dispute is filtered out
    at.selectbox[0].set_value(first)
    at.run()
    labels = " ".join(e.label for e in at.expander)
    assert "1 other disputes by this customer, 1 by other customers on the same card" in labels
    shown = [t.value for t in at.text]
    assert any(t.startswith("Ann Again\nann@example.io") for t in shown)  # the customer, as plain text
    assert f"Dispute {second}: needs_response, 49.00 USD" in shown
    # The other customer is named, as plain text (never rendered as markdown/HTML).
    assert f"Dispute {other} by **Cora** <b>Other</b> <cora@example.io>: needs_response, 49.00 USD" in shown


def test_filters_live_in_the_url_so_a_refresh_or_link_shows_the_same_queue(runtime: Any,
                                                                           emulator: EmulatorHandle) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO_ROOT, identity_for

    mine = _dispute(runtime, "url-filter@example.io")
    _dispute(runtime, "someone-else@example.io")
    at = app_test_for("disputes", "admin")
    next(t for t in at.text_input if t.label == "Customer email contains").input("url-filter@")
    next(n for n in at.number_input if n.label == "Min amount").set_value(10.0)
    _click(at, "Apply filters")
    assert at.query_params["email"] in ("url-filter@", ["url-filter@"])
    assert at.query_params["min"] in ("10", ["10"]) and "status" not in at.query_params  # the default statuses
    # Opening that URL afresh (a refresh, or the link sent to a colleague) shows the same queue.
    fresh = AppTest.from_file(str(REPO_ROOT / "app_pages" / "disputes.py"), default_timeout=30)
    fresh.session_state["identity"] = identity_for("admin@example.com")
    for name in ("email", "min"):
        value = at.query_params[name]
        fresh.query_params[name] = value[0] if isinstance(value, list) else value
    fresh.run()
    assert next(t for t in fresh.text_input if t.label == "Customer email contains").value == "url-filter@"
    assert list(fresh.dataframe[0].value["dispute"]) == [mine]
    # Hostile or junk parameters fall back to the defaults instead of failing the page.
    junk = AppTest.from_file(str(REPO_ROOT / "app_pages" / "disputes.py"), default_timeout=30)
    junk.session_state["identity"] = identity_for("admin@example.com")
    junk.query_params["min"] = "nan"
    junk.query_params["page"] = "-3"
    junk.query_params["status"] = "bogus,needs_response"
    junk.run()
    assert not junk.exception
    assert next(m for m in junk.multiselect if m.label == "Status").value == ["needs_response"]
