"""The runbook's 8-case plan-change QA matrix, run against Stripe test mode.

Each case stands alone: its own test clock and customer (Stripe's test card
tokens), actions through the console's own services (plan_changes,
reconciliation), then the resulting events pulled from the Events API and
ingested like a sync would, and finally three kinds of expectation: Stripe's
state, the events seen and the billing-DB rows. A failed expectation is
recorded in words with the evidence (ids, events, timings). Live mode is
refused: the matrix creates customers and charges test cards.

The work is split by job; this module is the one name the pages, the CLI and the
sign-off import it by:
- services/qa_runner.py: the case context and the steps cases are written in, run_case;
- services/qa_cases.py: the catalogue and the 8 cases;
- services/qa_runs.py: runs (live refused, results stored, audited), manual results, CLI lines;
- services/qa_results.py: latest results, what keeps the matrix red, recent runs, code_version.
"""

from __future__ import annotations

from services.qa_cases import CASE_IDS, CASE_RUNNERS, CASES, CASES_BY_ID, QaCase
from services.qa_results import PASSED_STATUSES, code_version, latest_results, matrix_problems, recent_runs, result_row
from services.qa_runner import CaseContext, CaseOutcome, ExpectationFailed, run_case
from services.qa_runs import (
    ProgressCallback,
    QaRefused,
    QaRunSummary,
    record_manual_result,
    run_matrix,
    run_matrix_cli,
    start_qa_run,
)

__all__ = [
    "CASES", "CASES_BY_ID", "CASE_IDS", "CASE_RUNNERS", "PASSED_STATUSES", "CaseContext",
    "CaseOutcome", "ExpectationFailed", "ProgressCallback", "QaCase", "QaRefused", "QaRunSummary", "code_version",
    "latest_results", "matrix_problems", "recent_runs", "record_manual_result", "result_row", "run_case",
    "run_matrix", "run_matrix_cli", "start_qa_run",
]
