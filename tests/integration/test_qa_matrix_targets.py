"""The QA matrix knows its target: on the emulator (STRIPE_API_BASE set) its browser-only
steps, hosted Checkout and the 3-D Secure challenge, run through the emulator's helpers; on
real Stripe they are marked manual (evidence, result notes and the CLI line) and the case
takes the API route for the rest. Real Stripe is stood in for by the emulator behind a
runtime whose settings name no STRIPE_API_BASE (this machine has no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from db.models import QaResult
from services.qa_matrix import run_matrix_cli

BROWSER_CASES = ["new_subscription", "sca_required"]


@pytest.fixture
def qa_runtime(emulator: Any, runtime_factory: Callable[..., Any]) -> Any:
    seeded = emulator.admin("seed", {"customers": 0})
    return runtime_factory(STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]))


def _run(runtime: Any) -> tuple[bool, list[str], dict[str, QaResult]]:
    lines: list[str] = []
    ok = run_matrix_cli(runtime, case_ids=BROWSER_CASES, actor="qa@example.com", echo=lines.append)
    with runtime.uow() as uow:
        results = {r.case_id: r for r in uow.session.execute(select(QaResult).order_by(QaResult.id)).scalars()}
    return ok, lines, results


def test_on_the_emulator_the_browser_steps_are_automated(qa_runtime: Any) -> None:
    ok, lines, results = _run(qa_runtime)
    assert ok, "\n".join(lines)
    for case_id in BROWSER_CASES:
        assert results[case_id].evidence["manual_steps"] == []
        assert results[case_id].notes is None
    assert not [line for line in lines if "MANUAL" in line]
    assert "checkout.session.completed" in {e["type"] for e in results["new_subscription"].evidence["events"]}


def test_on_real_stripe_the_browser_steps_are_marked_manual(qa_runtime: Any) -> None:
    assert qa_runtime.gateway is not None  # built on the emulator first; then the settings read as real Stripe
    qa_runtime.settings = qa_runtime.settings.model_copy(update={"stripe_api_base": None})
    ok, lines, results = _run(qa_runtime)
    assert ok, "\n".join(lines)
    checkout = results["new_subscription"]
    assert [s["step"] for s in checkout.evidence["manual_steps"]] == ["checkout"]
    assert "4242 4242 4242 4242" in checkout.evidence["manual_steps"][0]["manual"]
    assert "checkout.session.completed" not in {e["type"] for e in checkout.evidence["events"]}
    sca = results["sca_required"]
    assert [s["step"] for s in sca.evidence["manual_steps"]] == ["complete_authentication"]
    assert "3-D Secure" in sca.evidence["manual_steps"][0]["manual"]
    for case_id in BROWSER_CASES:
        result = results[case_id]
        assert result.status == "passed" and result.manual is False  # automated run, not a tester's result
        assert result.notes and result.notes.startswith("Manual on real Stripe (browser only):")
    manual_lines = [line for line in lines if "MANUAL step" in line]
    assert len(manual_lines) == 2 and "complete_authentication" in manual_lines[1]
