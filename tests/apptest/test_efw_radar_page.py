"""The EFW page's Radar panel per role: Radar context and related payments, refund and block with
confirmation, Undo, partial refund with a reason, the refund history; non-admins and signed-out
visitors see none of it."""

from __future__ import annotations

from typing import Any

from services import efw_radar
from services import fraud_warnings as efw
from tests.conftest import EmulatorHandle, app_test_for, page_direct_test, page_text
from tests.integration.test_efw_radar import _customer, _efw, _items, _pay, _sync


def _click(at: Any, label: str) -> None:
    [b for b in at.button if b.label.startswith(label)][0].click()
    at.run()


def _texts(at: Any) -> str:
    return "\n".join(str(t.value) for t in at.text)


def test_radar_context_and_related_payments(runtime: Any, emulator: EmulatorHandle) -> None:
    efw_id, _ = _efw(runtime, email="radar@example.io")
    related = _pay(runtime, _customer(runtime, "radar@example.io"), "pm_card_visa", 1200)
    _sync(runtime)
    at = app_test_for("fraud_warnings", "admin")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Risk level"] == "elevated" and metrics["Outcome"] == "authorized"
    assert metrics["3-D Secure"] == "not used" and metrics["Risk score"].isdigit()
    checks = next(t.value for t in at.table if "result" in t.value.columns)
    assert dict(zip(checks.index, checks["result"], strict=True)) == {
        "CVC": "pass", "Address line 1 (AVS)": "not provided", "Postal code (AVS)": "not provided"}
    assert "Seller message: Payment complete." in _texts(at) and "•••• 5423" in _texts(at)
    table = next(d.value for d in at.dataframe if "same" in d.value.columns)
    assert list(table["charge"]) == [related] and list(table["same"]) == ["email"]
    assert "1 payment(s): 0 with an early fraud warning, 0 disputed, 0 refunded, 0 failed" in page_text(at)
    assert "No refunds on this charge." in page_text(at)


def test_refund_and_block_then_undo(runtime: Any, emulator: EmulatorHandle) -> None:
    efw_id, charge_id = _efw(runtime, email="block@example.io", amount=4200)
    _sync(runtime)
    at = app_test_for("fraud_warnings", "admin")
    _click(at, "Refund and block")
    assert "Refund **42.00 USD**" in page_text(at) and "TEST" in page_text(at)
    _click(at, "Refund 42.00 USD and block")
    assert not at.exception
    text = page_text(at)
    assert "Refunded 42.00 USD" in text and "Blocked the card" in text and "Blocked the email" in text
    assert _items(runtime)["console_blocked_emails"] == ["block@example.io"]
    assert efw.get_fraud_warning(runtime.uow(), efw_id).status == "refunded"  # type: ignore[union-attr]
    # The refunded warning stays chosen (?warning=), with its blocks and its history.
    assert at.query_params["warning"] == efw_id
    history = next(t.value for t in at.table if "sent by" in t.value.columns)
    assert list(history["status"]) == ["succeeded"] and list(history["amount"]) == ["42.00 USD"]
    assert "email: block@example.io on @console_blocked_emails · active" in _texts(at)
    undo = [b for b in at.button if b.label == "Undo"]
    assert len(undo) == 2
    email_block = next(b for b in efw_radar.blocks_for(runtime.uow(), efw_id) if b.item_type == "email")
    next(b for b in undo if b.key == f"efw_unblock_{email_block.id}").click()
    at.run()
    assert "The email is no longer blocked." in page_text(at)
    assert _items(runtime)["console_blocked_emails"] == []
    assert "email: block@example.io on @console_blocked_emails · removed" in _texts(at)


def test_partial_refund_with_a_reason(runtime: Any, emulator: EmulatorHandle) -> None:
    efw_id, charge_id = _efw(runtime, email="partial@example.io", amount=5000)
    _sync(runtime)
    at = app_test_for("fraud_warnings", "admin")
    field = next(t for t in at.text_input if t.label.startswith("Partial refund"))
    field.input("abc")
    _click(at, "Review partial refund")
    assert "is not an amount" in page_text(at)
    field = next(t for t in at.text_input if t.label.startswith("Partial refund"))
    field.input("12.50")
    next(s for s in at.selectbox if s.label == "Refund reason").set_value("duplicate")
    _click(at, "Review partial refund")
    assert "Refund **12.50 USD** of the 50.00 USD left" in page_text(at) and "*duplicate*" in page_text(at)
    _click(at, "Refund 12.50 USD")
    assert "Refunded 12.50 USD" in page_text(at)
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and (row.status, row.remaining) == ("open", 3750)
    history = next(t.value for t in at.table if "sent by" in t.value.columns)
    assert list(history["reason"]) == ["duplicate"] and list(history["amount"]) == ["12.50 USD"]


def test_other_roles_see_nothing(runtime: Any, emulator: EmulatorHandle) -> None:
    _efw(runtime, email="hidden@example.io")
    _sync(runtime)
    for role in ("non_admin", "signed_out"):
        direct = page_direct_test("fraud_warnings", role)
        text = page_text(direct)
        assert "No access" in text and "hidden@example.io" not in text and "Radar" not in text
        assert not direct.button and not direct.dataframe and not direct.metric and not direct.table
