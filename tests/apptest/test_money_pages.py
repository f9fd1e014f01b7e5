"""What a person reads about money, page by page: amounts formatted by their currency's exponent
("9.00 USD", "1,000 JPY", "1.500 KWD"), never raw minor units ("900 USD", "2900")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import streamlit as st

from db.models import Invoice, QaResult
from db.models.base import utcnow
from services import signoff
from services.qa_matrix import CASE_IDS, code_version
from services.runtime import Runtime, set_runtime
from tests.conftest import EmulatorHandle, app_test_for, choose, click, enter, page_direct_test, page_text
from tests.integration.golive_fixtures import ENG_LEAD, FakePreflightGateway, golive_settings, make_launch_ready
from tests.integration.test_fraud_warnings import _sync, _warning


def _frame_text(at: Any) -> str:
    return "\n".join(df.value.to_string() for df in at.dataframe)


# --- dunning ---------------------------------------------------------------------------------------
def test_dunning_shows_open_amounts_by_each_currency_exponent(runtime: Any) -> None:
    now = utcnow()
    with runtime.uow() as uow:
        for invoice_id, amount, currency in (("in_usd", 2900, "usd"), ("in_jpy", 1000, "jpy"),
                                             ("in_kwd", 1500, "kwd")):
            uow.session.add(Invoice(id=invoice_id, stripe_customer_id=f"cus_{currency}", status="open",
                                    amount_due=amount, currency=currency, plan="pro",
                                    payment_failed_at=now - timedelta(hours=2)))
        uow.commit()
    at = app_test_for("dunning", "admin")
    assert not at.exception
    table = at.dataframe[-1].value
    shown = dict(zip(table["invoice"], table["amount"], strict=True))
    assert shown == {"in_usd": "29.00 USD", "in_jpy": "1,000 JPY", "in_kwd": "1.500 KWD"}
    assert "currency" not in table.columns  # the code is part of the amount
    still_open = next(m for m in at.metric if m.label == "Still open")
    assert still_open.help == "Owing 1,000 JPY, 1.500 KWD, 29.00 USD"
    text = page_text(at)
    assert "2900" not in text and "1500" not in text


# --- plan changes ----------------------------------------------------------------------------------
def test_plan_change_preview_lines_are_formatted(migrated_sqlite_url: str) -> None:
    from db.session import UnitOfWork
    from services.stripe_mapping import upsert_customer, upsert_subscription
    from tests.integration.reconcile_fixtures import NOW, FakeGateway, settings_for, subscription

    settings = settings_for(migrated_sqlite_url)
    runtime = Runtime(settings)
    basic = subscription("sub_nine", price="price_basic_monthly", customer="cus_nine")
    basic["items"]["data"][0]["price"]["unit_amount"] = 900  # a 9.00 USD plan
    runtime.__dict__["gateway"] = FakeGateway([basic])
    with UnitOfWork(migrated_sqlite_url) as uow:
        upsert_customer(uow, {"id": "cus_nine", "email": "nine@customer.io"}, observed_at=NOW)
        upsert_subscription(uow, basic, observed_at=1, settings=settings)
        uow.commit()
    set_runtime(runtime)
    st.cache_data.clear()
    try:
        at = app_test_for("plan_changes", "admin")
        enter(at, "Customer email", "nine@customer.io")
        click(at, "Look up")
        choose(at, "New plan", "pro")
        choose(at, "Interval", "monthly")
        click(at, "Preview change")
        assert not at.exception
        metrics = {m.label: m.value for m in at.metric}
        # -4.50 unused basic (half of 9.00) + 15.00 remaining pro (half of 30.00)
        assert metrics["Proration invoiced now"] == "10.50 USD"
        assert metrics["Preview invoice amount due"] == "40.50 USD"
        lines = at.dataframe[-1].value
        assert list(lines["amount"]) == ["-4.50 USD", "15.00 USD", "30.00 USD"]
        frames = _frame_text(at)
        assert "-450" not in frames and "1500" not in frames
    finally:
        st.cache_data.clear()
        set_runtime(None)


# --- preflight and sign-off ------------------------------------------------------------------------
@pytest.fixture
def nine_dollar_runtime(migrated_sqlite_url: str) -> Iterator[Runtime]:
    runtime = Runtime(golive_settings(migrated_sqlite_url))
    gateway = FakePreflightGateway()
    gateway.prices["price_basic_monthly"]["unit_amount"] = 900
    runtime.__dict__["gateway"] = gateway
    set_runtime(runtime)
    st.cache_data.clear()
    yield runtime
    st.cache_data.clear()
    set_runtime(None)


def test_preflight_price_check_reads_9_00_usd(nine_dollar_runtime: Runtime) -> None:
    at = app_test_for("golive", "admin")
    click(at, "Run preflight")
    assert not at.exception
    text = page_text(at)
    assert "basic.monthly → price_basic_monthly: active, every month, 9.00 USD." in text
    assert "30.00 USD" in text
    assert "900 USD" not in text and "3000 USD" not in text


def test_signoff_record_and_summary_freeze_9_00_usd(nine_dollar_runtime: Runtime) -> None:
    make_launch_ready(nine_dollar_runtime, golive_at=utcnow() - timedelta(hours=2))  # the failure is in the window
    with nine_dollar_runtime.uow() as uow:
        for case_id in CASE_IDS:
            uow.session.add(QaResult(case_id=case_id, status="passed", manual=False, evidence={},
                                     actor="qa@example.com", code_version=code_version(), duration_ms=900))
        uow.session.add(Invoice(id="in_open", stripe_customer_id="cus_1", status="open", amount_due=2900,
                                currency="usd", plan="pro", payment_failed_at=utcnow() - timedelta(hours=1)))
        uow.commit()
    at = page_direct_test("signoff", ENG_LEAD)
    click(at, "Sign off")
    assert not at.exception
    assert "Signed as engineering lead" in page_text(at)
    frozen = "\n".join(at.dataframe[-1].value["message"])
    assert "active, every month, 9.00 USD." in frozen and "900 USD" not in frozen
    record = signoff.launch_record(nine_dollar_runtime.uow(), version=code_version())
    assert record is not None
    summary = signoff.summary_markdown(record)
    assert "active, every month, 9.00 USD." in summary and "900 USD" not in summary
    assert "dunning still open: 1 case(s) owing 29.00 USD" in summary
    assert "2900" not in summary


# --- EFW bulk refund: the total shown is the total refunded ---------------------------------------
def test_efw_bulk_dialog_total_is_what_the_emulator_refunds(runtime: Any, emulator: EmulatorHandle) -> None:
    full, _ = _warning(runtime, 1000, "full@example.io")
    partial, partial_charge = _warning(runtime, 2900, "partial@example.io")
    disputed, disputed_charge = _warning(runtime, 900, "disputed@example.io")
    runtime.gateway.create_refund({"charge": partial_charge, "amount": 900}, idempotency_key="partial-elsewhere")
    emulator.admin(f"charges/{disputed_charge}/dispute")
    _sync(runtime)
    at = app_test_for("fraud_warnings", "admin")
    at.multiselect[-1].set_value([full, partial, disputed])
    at.run()
    [b for b in at.button if b.label.startswith("Review bulk action")][0].click()
    at.run()
    text = page_text(at)
    # 10.00 + (29.00 - 9.00 already refunded); the disputed 9.00 would be refused, so it is not counted.
    assert "Refund **2** warning(s) in Stripe **TEST** mode, refunding **30.00 USD** in total" in text
    assert "1 chosen warning(s) skipped" in text
    dialog = at.dataframe[-1].value
    assert dict(zip(dialog["warning"], dialog["will refund"], strict=True)) == {
        full: "10.00 USD", partial: "20.00 USD", disputed: "0.00 USD"}
    assert dict(zip(dialog["warning"], dialog["already refunded"], strict=True))[partial] == "9.00 USD"
    assert "disputed" in dict(zip(dialog["warning"], dialog["note"], strict=True))[disputed]
    [b for b in at.button if b.label == "Refund 2 warning(s)"][0].click()
    at.run()
    assert not at.exception
    results = at.dataframe[-1].value
    assert dict(zip(results["warning"], results["result"], strict=True)) == {
        full: "done", partial: "done", disputed: "skipped"}
    assert "refunded 20.00 USD" in results.to_string()
    # The refund objects the emulator holds for these warnings add up to the dialog's total.
    refunds = [r.to_dict() for r in runtime.gateway.client.v1.refunds.list({"limit": 100}).data]
    console = [r for r in refunds if (r.get("metadata") or {}).get("efw") in {full, partial, disputed}]
    assert sorted((r["metadata"]["efw"], r["amount"], r["currency"]) for r in console) == sorted(
        [(full, 1000, "usd"), (partial, 2000, "usd")])
    assert sum(r["amount"] for r in console) == 3000
    assert not [r for r in refunds if r["charge"] == disputed_charge]


# --- disputes: a zero-decimal dispute, and an amount filter read in the chosen currency --------------
def _dispute_in(runtime: Any, amount: int, currency: str, email: str) -> str:
    from services.sync import run_sync

    gateway = runtime.gateway
    customer = gateway.create_customer({"email": email}, idempotency_key=f"c-{email}")
    intent = gateway.client.v1.payment_intents.create({"amount": amount, "currency": currency,
                                                       "customer": customer["id"],
                                                       "payment_method": "pm_card_createDispute", "confirm": True})
    run_sync(runtime, since=None, days=30)
    return str(next(gateway.list_disputes(payment_intent=intent.id))["id"])


def test_disputes_show_yen_unscaled_and_filter_amounts_in_the_chosen_currency(runtime: Any,
                                                                              emulator: EmulatorHandle) -> None:
    yen = _dispute_in(runtime, 5000, "jpy", "yen@example.io")
    dollars = _dispute_in(runtime, 4900, "usd", "dollar@example.io")
    at = app_test_for("disputes", "admin")
    assert not at.exception
    queue = at.dataframe[0].value
    assert dict(zip(queue["dispute"], queue["amount"], strict=True)) == {yen: "5,000 JPY", dollars: "49.00 USD"}
    assert next(m for m in at.metric if m.label == "Amount at risk").value == "5,000 JPY, 49.00 USD"
    # 1,000 typed with JPY chosen means 1,000 yen: both the 5,000 JPY dispute and nothing in USD.
    next(t for t in at.text_input if t.label == "Currency").input("jpy")
    next(n for n in at.number_input if n.label == "Min amount").set_value(1000.0)
    click(at, "Apply filters")
    assert list(at.dataframe[0].value["dispute"]) == [yen]
    # An amount bound with no currency is not guessed at.
    next(t for t in at.text_input if t.label == "Currency").input("")
    click(at, "Apply filters")
    assert "Amount filter not applied: Choose a currency" in page_text(at)
    assert set(at.dataframe[0].value["dispute"]) == {yen, dollars}
