"""Record a preflight run and show every runbook box with who ticks it.

A run is stored as one audit row (`preflight.run`, details: when, the results),
so the time and outcome of the last run need no table of their own and sit in
the tamper-evident log beside every other go-live action.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from db.repositories import audit as audit_rows
from db.session import UnitOfWork
from services import checklist
from services.audit import record
from services.preflight import run_preflight
from services.preflight_result import CheckResult, has_blocking_failure, status_word
from services.runbook_boxes import BOXES, RUNBOOK_TITLES, check_matches
from services.runtime import Runtime

RUN_ACTION = "preflight.run"


def run_and_record(runtime: Runtime, *, actor: str, repo: str | None = None) -> tuple[list[CheckResult], datetime,
                                                                                  bool]:
    """Run the preflight and append its audit row; `recorded` is False when the DB cannot take it."""
    ran_at = runtime.clock()
    results = run_preflight(runtime, repo=repo, explicit_run=True)
    from db.session import missing_sqlite_file

    if missing_sqlite_file(runtime.settings.database_url):
        return results, ran_at, False  # a read-only run creates no database; db.migrated says so
    recorded = True
    try:
        with runtime.uow() as uow:
            record(uow, actor=actor, action=RUN_ACTION, result="blocked" if has_blocking_failure(results) else "ok",
                   target="preflight", details={"ran_at": ran_at.isoformat(),
                                                "results": [r.to_dict() for r in results]})
            uow.commit()
    except Exception:  # an unmigrated or unreachable DB: the run still reports; db.migrated says why
        recorded = False
    return results, ran_at, recorded


def last_run(uow: UnitOfWork) -> tuple[datetime, str, list[CheckResult]] | None:
    with uow:
        row = audit_rows.latest_of(uow, RUN_ACTION)
        if row is None:
            return None
        results = [CheckResult(**r) for r in (row.details or {}).get("results", [])]
        return datetime.fromisoformat(row.details["ran_at"]), row.actor, results


def box_rows(results: list[CheckResult] | None, ran_at: datetime | None,
             items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per runbook box: machine (checks, result, time) or person (item, who, when, why)."""
    by_key = {item["key"]: item for item in items}
    rows = []
    for box in BOXES:
        row: dict[str, Any] = {"box": box.id, "runbook": RUNBOOK_TITLES[box.runbook], "section": box.section,
                               "text": box.text}
        if box.automated:
            matched = [r for r in results or [] for pattern in box.checks if check_matches(pattern, r.id)]
            if not results:
                result = "not run"
            elif not matched:
                result = "not checked"
            else:
                words = {status_word(r) for r in matched}
                result = "FAIL" if "FAIL" in words else "WARN" if "WARN" in words else "PASS"
            row.update({"ticked_by": "machine", "checks": list(box.checks), "result": result,
                        "ran_at": ran_at.isoformat(timespec="seconds") if ran_at and results else None})
        else:
            key = box.manual or ""
            item = by_key.get(key, {})
            seed = checklist.SEED_BY_KEY.get(key)
            status = item.get("status", "open")
            ticked = status != "open"
            updated_at = item.get("updated_at")
            row.update({"ticked_by": "person", "item": key, "item_title": item.get("title") or (seed.title if seed
                                                                                               else key),
                        "status": status, "ticked_by_who": item.get("updated_by") if ticked else None,
                        "ticked_at": updated_at.isoformat(timespec="seconds") if ticked and updated_at else None,
                        "why_manual": seed.why if seed else ""})
        rows.append(row)
    return rows
