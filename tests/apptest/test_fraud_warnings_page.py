"""The EFW page per role: queue, refund with confirmation, ignore with reason, bulk with a failing row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from db.models import FraudWarning
from services import fraud_warnings as efw
from tests.conftest import EmulatorHandle, app_test_for, page_direct_test, page_text
from tests.integration.test_fraud_warnings import _sync, _warning


def _click(at: Any, label: str) -> None:
    [b for b in at.button if b.label.startswith(label)][0].click()
    at.run()


def test_queue_refund_with_confirmation(runtime: Any, emulator: EmulatorHandle) -> None:
    efw_id, _ = _warning(runtime, 4200, "page@example.io")
    _sync(runtime)
    at = app_test_for("fraud_warnings", "admin")
    text = page_text(at)
    assert not at.exception
    assert "page@example.io" in at.dataframe[0].value.to_string() and "42.00 USD" in text
    assert "Issuer fraud type:** made_with_stolen_card" in text.replace("**Issuer", "Issuer")
    _click(at, "Refund full amount")
    assert "Refund **42.00 USD**" in page_text(at) and "TEST" in page_text(at)
    _click(at, "Refund 42.00 USD")
    assert "Refunded 42.00 USD" in page_text(at)
    assert efw.get_fraud_warning(runtime.uow(), efw_id).status == "refunded"  # type: ignore[union-attr]


def test_ignore_needs_a_reason(runtime: Any) -> None:
    efw_id, _ = _warning(runtime, 1500, "ignore@example.io")
    _sync(runtime)
    at = app_test_for("fraud_warnings", "admin")
    _click(at, "Mark as ignored")
    assert "at least 10 characters" in page_text(at)
    assert efw.get_fraud_warning(runtime.uow(), efw_id).status == "open"  # type: ignore[union-attr]
    at.text_area[0].input("Customer confirmed the purchase by phone")
    _click(at, "Mark as ignored")
    assert "Marked" in page_text(at)
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and row.status == "ignored" and row.reason == "Customer confirmed the purchase by phone"


def test_bulk_refund_shows_a_failing_row(runtime: Any, emulator: EmulatorHandle) -> None:
    good, _ = _warning(runtime, 1000, "g@example.io")
    bad, bad_charge = _warning(runtime, 2000, "b@example.io")
    _sync(runtime)
    emulator.admin(f"charges/{bad_charge}/dispute")
    at = app_test_for("fraud_warnings", "admin")
    at.multiselect[-1].set_value([good, bad])
    at.run()
    _click(at, "Review bulk action")
    assert "Refund **2** warning(s)" in page_text(at) and "30.00 USD" in page_text(at)
    _click(at, "Refund 2 warning(s)")
    results = at.dataframe[-1].value
    assert dict(zip(results["warning"], results["result"], strict=True)) == {good: "done", bad: "refused"}
    assert "disputed" in results.to_string()


def _three_open_warnings(runtime: Any) -> None:
    """issfr_0, issfr_1, issfr_2 on ch_0 .. ch_2, created 3, 1 and 2 November."""
    with runtime.uow() as uow:
        for i, day in enumerate((3, 1, 2)):
            uow.session.add(FraudWarning(id=f"issfr_{i}", charge_id=f"ch_{i}", amount=100, currency="usd",
                                         actionable=True, created=datetime(2026, 11, day, tzinfo=UTC)))
        uow.commit()


def test_queue_is_oldest_first_among_open_actionable(runtime: Any) -> None:
    _three_open_warnings(runtime)
    assert [r.id for r in efw.list_queue(runtime.uow(), efw.EfwFilter()).rows] == ["issfr_1", "issfr_2", "issfr_0"]


def test_empty_queue_and_roles(runtime: Any) -> None:
    at = app_test_for("fraud_warnings", "admin")
    assert "No early fraud warnings match" in page_text(at) and not at.exception
    for role in ("non_admin", "signed_out"):
        direct = page_direct_test("fraud_warnings", role)
        assert "No access" in page_text(direct) and not direct.button and not direct.dataframe


def test_refunded_or_disputed_charges_are_not_open_on_the_page(runtime: Any, emulator: EmulatorHandle) -> None:
    refunded, refunded_charge = _warning(runtime, 2500, "refunded@example.io")
    disputed, disputed_charge = _warning(runtime, 3500, "disputed@example.io")
    _warning(runtime, 4500, "live@example.io")
    runtime.gateway.create_refund({"charge": refunded_charge}, idempotency_key=f"dash-refund:{refunded_charge}")
    emulator.admin(f"charges/{disputed_charge}/dispute")
    _sync(runtime)
    at = app_test_for("fraud_warnings", "admin")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Open"] == "1" and metrics["Amount at risk"] == "45.00 USD"
    assert (metrics["Resolved by refund"], metrics["Disputed"]) == ("1", "1")
    table = at.dataframe[0].value
    assert dict(zip(table["warning"], table["status"], strict=False))[refunded] == "resolved by refund"
    assert dict(zip(table["warning"], table["status"], strict=False))[disputed] == "disputed"
    next(s for s in at.selectbox if s.label == "Warning").set_value(refunded)
    at.run()
    assert "Resolved by refund: the charge is already fully refunded" in page_text(at)
    assert not [b for b in at.button if b.label.startswith("Refund full amount")]


def test_a_link_with_a_warning_or_charge_opens_that_warning(runtime: Any) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO_ROOT, identity_for

    _three_open_warnings(runtime)
    for params, expected in (({"warning": "issfr_2"}, "issfr_2"), ({"charge": "ch_0"}, "issfr_0"),
                             ({"warning": "issfr_nope"}, "issfr_1")):
        at = AppTest.from_file(str(REPO_ROOT / "app_pages" / "fraud_warnings.py"), default_timeout=30)
        at.session_state["identity"] = identity_for("admin@example.com")
        for key, value in params.items():
            at.query_params[key] = value
        at.run()
        assert next(s for s in at.selectbox if s.label == "Warning").value == expected


def test_tiles_follow_the_filters(runtime: Any) -> None:
    with runtime.uow() as uow:
        for i, kind in enumerate(("card_never_received", "made_with_stolen_card", "made_with_stolen_card")):
            uow.session.add(FraudWarning(id=f"issfr_t{i}", charge_id=f"ch_t{i}", amount=1000 * (i + 1),
                                         currency="usd", fraud_type=kind, actionable=True,
                                         created=datetime.now(UTC)))
        uow.commit()
    at = app_test_for("fraud_warnings", "admin")
    assert {x.label: x.value for x in at.metric}["Open"] == "3"
    at.multiselect[1].set_value(["made_with_stolen_card"])
    _click(at, "Apply filters")
    tiles = {x.label: x.value for x in at.metric}
    assert (tiles["Open"], tiles["Open and actionable"], tiles["Amount at risk"]) == ("2", "2", "50.00 USD")
