"""What the reconciliation page, the First-24h board and the alerts read: recent runs, a run's
actions, the last run per mode, the latest drift findings, the reconcile alert."""

from __future__ import annotations

from typing import Any

from db.models import ReconcileAction
from db.models.base import from_unix
from db.repositories import reconciliation as reconcile_rows
from db.session import UnitOfWork
from services.config import Settings
from services.reconcile_fixes import describe_fix, has_working_fix
from services.reconcile_rules import DRIFT_KINDS
from services.reconcile_run import DECIDED_RESULTS
from services.webhook_counts import QA_TRIGGER


def recent_runs(uow: UnitOfWork, *, limit: int = 50, qa: bool = False) -> list[dict[str, Any]]:
    """The run history: production runs, or (qa=True) only the QA matrix's own runs."""
    with uow:
        runs = reconcile_rows.recent_runs(uow, trigger=QA_TRIGGER, only=qa, limit=limit)
        return [
            {
                "run": run.id,
                "started": run.started_at,
                "mode": run.mode,
                "trigger": run.trigger,
                "actor": run.actor,
                "examined": run.examined,
                "applied": run.applied,
                "drift": run.drift,
                "errors": run.errors,
                "list calls": run.list_calls,
                "duration (s)": round((run.finished_at - run.started_at).total_seconds(), 2)
                if run.finished_at else None,
                "status": "running" if run.finished_at is None else ("failed" if run.error else "completed"),
                "error": run.error,
            }
            for run in runs
        ]


def run_actions(uow: UnitOfWork, run_id: int) -> list[dict[str, Any]]:
    with uow:
        return [_action_row(row) for row in reconcile_rows.actions_of_run(uow, run_id)]


def _action_row(row: ReconcileAction) -> dict[str, Any]:
    before, after = row.before or {}, row.after or {}
    return {
        "action": row.id,
        "run": row.run_id,
        "subscription": row.stripe_subscription_id,
        "kind": row.kind,
        "result": row.result,
        "before": _short_state(before),
        "after": after.get("problem") or _short_state(after),
        "idempotency key": row.idempotency_key,
        "error": row.error,
    }


def _short_state(state: dict[str, Any]) -> str:
    if not state:
        return ""
    parts = [f"{state.get('plan') or state.get('price') or '?'} {state.get('interval') or ''}".strip()]
    if "cancel_at_period_end" in state:
        parts.append(f"cancel_at_period_end={str(bool(state['cancel_at_period_end'])).lower()}")
    if state.get("pending_plan"):
        parts.append(f"pending_plan={state['pending_plan']}")
    end = from_unix(state.get("current_period_end"))
    if end:
        parts.append(f"period end {end.isoformat(timespec='minutes')}")
    return ", ".join(parts)


def last_run(uow: UnitOfWork, *, mode: str) -> dict[str, Any] | None:
    """The latest finished run of one mode ("apply" or "dry-run"): a dry-run never stands in for
    the last applied run."""
    with uow:
        # QA runs are shown on their own.
        runs = reconcile_rows.finished_runs(uow, mode=mode, skip_trigger=QA_TRIGGER, limit=1)
        if not runs:
            return None
        run = runs[0]
        return {"run": run.id, "mode": run.mode, "trigger": run.trigger, "actor": run.actor,
                "started": run.started_at, "finished": run.finished_at, "examined": run.examined,
                "applied": run.applied, "drift": run.drift, "errors": run.errors, "error": run.error}


def latest_drift(uow: UnitOfWork, *, mode: str = "apply", include_dismissed: bool = False) -> list[dict[str, Any]]:
    """Drift findings of the latest finished run of `mode`; dismissed ones only when asked."""
    latest = last_run(uow, mode=mode)
    if latest is None:
        return []
    with uow:
        rows = reconcile_rows.actions_of_run(uow, latest["run"], kinds=DRIFT_KINDS,
                                             excluding=None if include_dismissed else DECIDED_RESULTS)
        return [
            {**_action_row(row), "fix": describe_fix(row.kind), "fixable": has_working_fix(row.kind),
             "dismissed": (f"{(row.after or {}).get('dismissed_by')}: {(row.after or {}).get('dismissed_reason')}"
                           if row.result == "dismissed" else "")}
            for row in rows
        ]


def reconcile_alert(uow: UnitOfWork, *, settings: Settings) -> str | None:
    """The runbook's alerts: the latest run applied more than the threshold, or the
    last runs all failed."""
    with uow:
        runs = reconcile_rows.finished_runs(uow, mode="apply", skip_trigger=QA_TRIGGER, limit=3)
    if not runs:
        return None
    latest = runs[0]
    if latest.applied > settings.alert_reconcile_applied_max:
        return (f"Run {latest.id} applied {latest.applied} downgrades, more than the alert threshold of "
                f"{settings.alert_reconcile_applied_max}.")
    if len(runs) >= 2 and all(run.error or run.errors for run in runs[:2]):
        return "The last reconciliation runs had errors; check the actions below."
    return None
