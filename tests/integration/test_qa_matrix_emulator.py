"""`billing-ops qa run` against the Stripe emulator from an empty billing DB:
all 8 cases pass and are recorded with evidence; each case fails with the right
expectation named when the emulator misbehaves for it; live mode is refused
before any Stripe call."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from db.models import AuditLog, QaResult, QaRun
from services.qa_matrix import CASE_IDS, run_matrix_cli


@pytest.fixture
def qa_runtime(emulator: Any, runtime_factory: Callable[..., Any]) -> Any:
    seeded = emulator.admin("seed", {"customers": 0})
    return runtime_factory(STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]))


def _results(runtime: Any) -> dict[str, QaResult]:
    with runtime.uow() as uow:
        return {r.case_id: r for r in uow.session.execute(select(QaResult).order_by(QaResult.id)).scalars()}


def _run(runtime: Any, case_ids: list[str] | None = None) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = run_matrix_cli(runtime, case_ids=case_ids, actor="qa@example.com", echo=lines.append)
    return ok, lines


def test_all_eight_cases_pass_from_an_empty_db(qa_runtime: Any) -> None:
    ok, lines = _run(qa_runtime)
    results = _results(qa_runtime)
    assert ok, "\n".join(lines)
    assert set(results) == set(CASE_IDS)
    for case_id, result in results.items():
        assert result.status == "passed", (case_id, result.failed_expectation)
        assert result.evidence["ids"]["customer"].startswith("cus_")
        assert result.evidence["ids"]["test_clock"].startswith("clock_")
        assert result.evidence["events"], case_id
        assert all(e["passed"] for e in result.evidence["expectations"])
        assert result.duration_ms is not None and result.code_version
    assert {e["type"] for e in results["new_subscription"].evidence["events"]} >= {
        "checkout.session.completed", "customer.subscription.created", "invoice.paid"}
    assert "invoice.payment_action_required" in {e["type"] for e in results["sca_required"].evidence["events"]}
    assert "invoice.payment_failed" in {e["type"] for e in results["past_due_recovered"].evidence["events"]}
    assert lines[-1].endswith("8/8 passed.")
    with qa_runtime.uow() as uow:
        run = uow.session.execute(select(QaRun)).scalar_one()
        assert run.status == "passed" and run.finished_at is not None
        audit = uow.session.execute(select(AuditLog).where(AuditLog.action == "qa.run")).scalar_one()
        assert audit.result == "ok" and audit.target == f"qa_run:{run.id}"


MISBEHAVIOURS = [
    pytest.param({"downgrade_cancels": True}, "reconciliation_applies", "Basic", id="reconciliation_applies"),
    pytest.param({"sca_never_completes": True}, "sca_required", "paid after completion", id="sca_required"),
    pytest.param({"dunning_never_recovers": True}, "past_due_recovered", "paid with the updated card",
                 id="past_due_recovered"),
    pytest.param({"suppress_events": ["customer.subscription.deleted"]}, "cancel_at_period_end",
                 "customer.subscription.deleted", id="cancel_at_period_end"),
]


@pytest.mark.parametrize(("misbehave", "case_id", "expectation_words"), MISBEHAVIOURS)
def test_case_fails_naming_the_expectation_when_stripe_misbehaves(
    qa_runtime: Any, emulator: Any, misbehave: dict[str, Any], case_id: str, expectation_words: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("services.qa_runner.EVENT_WAIT_SECONDS", 2.0)  # a suppressed event never comes
    emulator.admin("misbehave", misbehave)
    ok, lines = _run(qa_runtime, [case_id])
    assert not ok
    result = _results(qa_runtime)[case_id]
    assert result.status == "failed", (result.status, result.failed_expectation)
    assert expectation_words in (result.failed_expectation or "")
    assert any(line.startswith("FAILED") and expectation_words in line for line in lines), lines
    assert any(not e["passed"] for e in result.evidence["expectations"])


def test_live_mode_is_refused_before_any_stripe_call(emulator: Any, runtime_factory: Callable[..., Any],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    runtime = runtime_factory(STRIPE_API_KEY="sk_live_CANARYlive0123456789", STRIPE_MODE="live")
    emulator.clear_requests()
    ok, lines = _run(runtime)
    assert not ok and "test mode" in lines[-1]
    assert emulator.requests() == []
    with runtime.uow() as uow:
        assert uow.session.execute(select(QaRun)).first() is None
        audit = uow.session.execute(select(AuditLog).where(AuditLog.action == "qa.run")).scalar_one()
        assert audit.result == "refused"


def test_cli_qa_run_exit_codes(qa_runtime: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from cli import main

    monkeypatch.chdir(tmp_path)
    settings = qa_runtime.settings
    env = {
        "DATABASE_URL": settings.database_url, "STRIPE_API_KEY": settings.stripe_secret,
        "STRIPE_API_BASE": settings.stripe_api_base, "STRIPE_MODE": "test",
        "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(settings.price_mapping), "ADMIN_EMAILS": "admin@example.com",
        "STRIPE_RATE_LIMIT_PER_SECOND": "1000",
    }
    result = CliRunner().invoke(main, ["qa", "run", "--case", "upgrade"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "PASSED upgrade" in result.output
    result = CliRunner().invoke(main, ["qa", "run", "--case", "nope"], env=env, catch_exceptions=False)
    assert result.exit_code == 1 and "Unknown QA case" in result.output
