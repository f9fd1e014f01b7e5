"""What the QA pages and the sign-off read: the latest result per case (per code
version), why the matrix is not green, recent runs, and the running code's version."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any

from db.models import QaResult
from db.repositories import qa_runs as qa_rows
from db.session import UnitOfWork
from services.qa_cases import CASE_IDS, CASES, CASES_BY_ID

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "billing-ops-console"
PASSED_STATUSES = ("passed", "manual_pass")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The running code: the git short hash when available, else the package version."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return importlib.metadata.version(PACKAGE_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def result_row(row: QaResult) -> dict[str, Any]:
    case = CASES_BY_ID.get(row.case_id)
    return {
        "id": row.id, "run_id": row.run_id, "case_id": row.case_id, "case": case.title if case else row.case_id,
        "status": row.status, "manual": row.manual, "failed_expectation": row.failed_expectation,
        "notes": row.notes, "actor": row.actor, "code_version": row.code_version, "duration_ms": row.duration_ms,
        "at": row.at, "evidence": row.evidence,
    }


def latest_results(uow: UnitOfWork, *, version: str | None = None) -> dict[str, dict[str, Any]]:
    """The latest result per case (for `version` when given)."""
    with uow:
        latest: dict[str, dict[str, Any]] = {}
        for row in qa_rows.results_newest_first(uow, version=version):
            if row.case_id not in latest:
                latest[row.case_id] = result_row(row)
            if len(latest) == len(CASE_IDS):
                break
        return latest


def matrix_problems(uow: UnitOfWork, *, version: str) -> list[str]:
    """Why the matrix is not green for this code version (empty when every case passed)."""
    latest = latest_results(uow, version=version)
    problems = []
    for case in CASES:
        result = latest.get(case.id)
        if result is None:
            problems.append(f"{case.title}: not run at code version {version}")
        elif result["status"] not in PASSED_STATUSES:
            problems.append(f"{case.title}: {result['status']}"
                            + (f" ({result['failed_expectation']})" if result["failed_expectation"] else ""))
    return problems


def recent_runs(uow: UnitOfWork, *, limit: int = 20) -> list[dict[str, Any]]:
    with uow:
        runs = qa_rows.recent_runs(uow, limit=limit)
        return [{"run_id": r.id, "started_at": r.started_at, "finished_at": r.finished_at, "actor": r.actor,
                 "mode": r.mode, "code_version": r.code_version, "status": r.status} for r in runs]
