"""QA-matrix runs: refuse live mode, run the chosen cases, store each result as it
finishes, audit the run; the tester's manual results; the CLI's one line per case."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from db.models import QaResult, QaRun
from db.models.base import utcnow
from db.repositories import qa_runs as qa_rows
from db.session import UnitOfWork
from services.audit import privileged, record
from services.config import Settings
from services.errors import ConsoleError
from services.qa_cases import CASE_IDS, CASE_RUNNERS, CASES_BY_ID
from services.qa_results import code_version, result_row
from services.qa_runner import CaseOutcome, run_case
from services.runtime import Runtime

ProgressCallback = Callable[[int, int, str, str], None]


class QaRefused(ConsoleError):
    """A QA run was refused (e.g. live mode)."""


def _refuse_live(settings: Settings) -> None:
    from services.config import stripe_key_mode

    key = settings.stripe_secret
    if settings.stripe_mode == "live" or (key and stripe_key_mode(key) == "live"):
        raise QaRefused("The QA matrix runs only in Stripe test mode: it creates customers and charges test cards.")


@dataclass
class QaRunSummary:
    run_id: int
    code_version: str
    outcomes: list[CaseOutcome]

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.status == "passed" for o in self.outcomes)


def run_matrix(
    runtime: Runtime, *, case_ids: list[str] | None, actor: str, progress: ProgressCallback | None = None
) -> QaRunSummary:
    """Run the chosen cases (all by default), storing each result as it finishes."""
    chosen = list(case_ids or CASE_IDS)
    unknown = [c for c in chosen if c not in CASES_BY_ID]
    if unknown:
        raise QaRefused(f"Unknown QA case(s): {', '.join(unknown)}. Known: {', '.join(CASE_IDS)}.")
    try:
        _refuse_live(runtime.settings)
    except QaRefused as refusal:
        with runtime.uow() as uow:
            record(uow, actor=actor, action="qa.run", result="refused", target="qa_matrix", error=refusal.message)
            uow.commit()
        raise
    version = code_version()
    with runtime.uow() as uow:
        run = QaRun(actor=actor, mode=runtime.settings.stripe_mode, code_version=version, status="running")
        qa_rows.add(uow, run)
        uow.commit()
        run_id = run.id
    outcomes: list[CaseOutcome] = []
    for position, case_id in enumerate(chosen):
        if progress:
            progress(position, len(chosen), case_id, "running")
        outcome = run_case(runtime, case_id, CASE_RUNNERS[case_id], run_id=run_id, actor=actor)
        outcomes.append(outcome)
        with runtime.uow() as uow:
            qa_rows.add(uow, QaResult(run_id=run_id, case_id=case_id, status=outcome.status, manual=False,
                                      notes=manual_steps_note(outcome),
                                      failed_expectation=outcome.failed_expectation,
                                      evidence=json.loads(json.dumps(outcome.evidence, default=str)), actor=actor,
                                      code_version=version, duration_ms=outcome.duration_ms))
            uow.commit()
        if progress:
            progress(position + 1, len(chosen), case_id, outcome.status)
    summary = QaRunSummary(run_id, version, outcomes)
    with runtime.uow() as uow:
        stored = qa_rows.run(uow, run_id)
        assert stored is not None
        stored.status = "passed" if summary.passed else "failed"
        stored.finished_at = utcnow()
        record(uow, actor=actor, action="qa.run", result="ok", target=f"qa_run:{run_id}",
               idempotency_key=f"qa:{run_id}",
               details={"code_version": version, "cases": {o.case_id: o.status for o in outcomes}})
        uow.commit()
    return summary


def manual_steps_note(outcome: CaseOutcome) -> str | None:
    """The browser-only steps a run against real Stripe left to a person (None on the emulator)."""
    steps = outcome.evidence.get("manual_steps") or []
    if not steps:
        return None
    return "Manual on real Stripe (browser only): " + "; ".join(f"{s['step']}: {s['manual']}" for s in steps)


@privileged("qa.run")
def start_qa_run(
    case_ids: list[str] | None, *, actor: str, settings: Settings, uow: UnitOfWork, runtime: Runtime,
    progress: ProgressCallback | None = None,
) -> QaRunSummary:
    """The page's "Run QA matrix" button (admins only)."""
    return run_matrix(runtime, case_ids=case_ids, actor=actor, progress=progress)


def run_matrix_cli(runtime: Runtime, *, case_ids: list[str] | None, actor: str, echo: Callable[[str], None]) -> bool:
    """`billing-ops qa run`: prints one line per case; True when every case passed."""
    def progress(done: int, total: int, case_id: str, status: str) -> None:
        if status == "running":
            echo(f"[{done + 1}/{total}] {case_id} ...")

    try:
        summary = run_matrix(runtime, case_ids=case_ids, actor=actor, progress=progress)
    except QaRefused as refusal:
        echo(f"Refused: {refusal.message}")
        return False
    for outcome in summary.outcomes:
        line = f"{outcome.status.upper():6} {outcome.case_id} ({outcome.duration_ms / 1000:.1f} s)"
        if outcome.failed_expectation:
            line += f": expected {outcome.failed_expectation}"
        echo(line)
        for step in outcome.evidence.get("manual_steps") or []:
            echo(f"       MANUAL step {step['step']}: {step['manual']} (browser only on real Stripe)")
    passed = sum(o.status == "passed" for o in summary.outcomes)
    echo(f"QA run {summary.run_id} at code {summary.code_version}: {passed}/{len(summary.outcomes)} passed.")
    return summary.passed


@privileged("qa.manual_result")
def record_manual_result(
    case_id: str, passed: bool, notes: str, *, actor: str, settings: Settings, uow: UnitOfWork
) -> dict[str, Any]:
    """A tester's own result for a case (e.g. run by hand on a real card), with notes."""
    if case_id not in CASES_BY_ID:
        raise QaRefused(f"Unknown QA case: {case_id}.")
    notes = (notes or "").strip()
    if not notes:
        raise QaRefused("Write what you did and saw in the notes: a manual result needs evidence.")
    version = code_version()
    status = "manual_pass" if passed else "manual_fail"
    with uow:
        row = QaResult(run_id=None, case_id=case_id, status=status, manual=True, notes=notes[:4000], actor=actor,
                       code_version=version, evidence={"manual": True},
                       failed_expectation=None if passed else "the tester recorded a failure (see notes)")
        qa_rows.add(uow, row)
        record(uow, actor=actor, action="qa.manual_result", result="ok", target=f"qa_case:{case_id}",
               idempotency_key=f"qa-manual:{row.id}", details={"status": status, "code_version": version})
        uow.commit()
        return result_row(row)
