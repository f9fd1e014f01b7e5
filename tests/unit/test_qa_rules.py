"""Pure rules of the QA matrix: the 8 runbook cases, the event windows, basil's
invoice payment shape, expectation failures and the code version fallback."""

from __future__ import annotations

import subprocess
from typing import Any, cast

import pytest

from services import qa_matrix, qa_runner
from services.qa_matrix import CASE_IDS, CASE_RUNNERS, CaseContext, ExpectationFailed
from services.runtime import Runtime
from services.stripe_objects import invoice_payment_intent

NO_RUNTIME = cast(Runtime, None)  # the pure rules never reach Stripe or the database


def test_the_runbooks_eight_cases_each_have_a_runner() -> None:
    assert CASE_IDS == ("new_subscription", "upgrade", "downgrade_scheduled", "reconciliation_applies",
                        "sca_required", "past_due_recovered", "portal_downgrade", "cancel_at_period_end")
    assert set(CASE_RUNNERS) == set(CASE_IDS)


def test_expect_records_and_names_the_failed_expectation() -> None:
    ctx = CaseContext(runtime=NO_RUNTIME, run_id=1, case_id="upgrade", actor="qa")
    ctx.expect(True, "Stripe subscription is on Pro")
    with pytest.raises(ExpectationFailed) as failure:
        ctx.expect(False, "the upgrade invoice is paid", "open")
    assert failure.value.expectation == "the upgrade invoice is paid (saw: open)"
    assert [e["passed"] for e in ctx.evidence()["expectations"]] == [True, False]
    assert ctx.key("pay") == "qa:1:upgrade:pay"


def test_event_windows_cover_a_past_clock() -> None:
    ctx = CaseContext(runtime=NO_RUNTIME, run_id=1, case_id="reconciliation_applies", actor="qa", started_ts=1_000_000)
    assert qa_runner.event_windows(ctx) == [{"gte": 999_995}]
    ctx.clock_started_ts, ctx.clock_time = 500_000, 600_000
    assert qa_runner.event_windows(ctx) == [{"gte": 999_995}, {"gte": 499_995, "lte": 600_005}]
    ctx.clock_started_ts, ctx.clock_time = 1_000_000, 3_000_000  # a clock from now on needs no extra window
    assert qa_runner.event_windows(ctx) == [{"gte": 999_995}]


def test_invoice_payment_intent_reads_basil_payments() -> None:
    invoice = {"payments": {"data": [{"payment": {"type": "payment_intent", "payment_intent": "pi_1"}}]}}
    assert invoice_payment_intent(invoice) == "pi_1"
    assert invoice_payment_intent({"payments": {"data": [{"payment": {"payment_intent": {"id": "pi_2"}}}]}}) == "pi_2"
    assert invoice_payment_intent({"payments": {"data": []}}) is None
    assert invoice_payment_intent({"payment_intent": "pi_old"}) == "pi_old"  # pre-basil shape, only as a fallback


def test_code_version_falls_back_to_the_package_version(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("git not installed")

    qa_matrix.code_version.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert qa_matrix.code_version() == "0.1.0"
    finally:
        qa_matrix.code_version.cache_clear()
