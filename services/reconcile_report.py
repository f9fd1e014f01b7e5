"""A reconciliation run as the CLI shows it: JSON (`--json`) and the plain table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.reconcile_rules import APPLY_DOWNGRADE, ReconcileReport


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def run_to_json(report: ReconcileReport) -> dict[str, Any]:
    """The `billing-ops reconcile --json` document (docs/reconcile.schema.json)."""
    return {
        "run_id": report.run_id,
        "mode": report.mode,
        "trigger": report.trigger,
        "actor": report.actor,
        "started_at": _iso(report.started_at),
        "finished_at": _iso(report.finished_at),
        "duration_seconds": round(report.duration_seconds, 3),
        "now": report.now,
        "lookahead_seconds": report.lookahead_seconds,
        "counts": {
            "examined": report.examined,
            "applied": report.applied,
            "planned": report.planned,
            "drift": report.drift,
            "errors": report.errors,
            "list_calls": report.list_calls,
        },
        "error": report.error,
        "alert": report.alert,
        "actions": [
            {
                "action_id": action.action_id,
                "subscription_id": action.subscription_id,
                "kind": action.kind,
                "result": action.result,
                "idempotency_key": action.idempotency_key,
                "before": action.before,
                "after": {k: v for k, v in action.after.items() if k != "stripe_params"},
                "error": action.error,
            }
            for action in report.actions
        ],
    }


def format_run_table(report: ReconcileReport) -> str:
    lines = [
        f"Reconciliation run {report.run_id} ({report.mode}, {report.trigger}) "
        f"in {report.duration_seconds:.1f} s",
        f"examined {report.examined}  applied {report.applied}  planned {report.planned}  "
        f"drift {report.drift}  errors {report.errors}  list calls {report.list_calls}",
    ]
    if report.error:
        lines.append(f"RUN ERROR: {report.error}")
    if report.alert:
        lines.append(f"ALERT: {report.alert}")
    if report.actions:
        lines.append("")
        lines.append(f"{'subscription':<32} {'kind':<32} {'result':<9} detail")
        for action in report.actions:
            detail = action.error or action.after.get("problem") or ""
            if action.kind == APPLY_DOWNGRADE and not action.error:
                detail = f"{action.before.get('plan')} -> {action.after.get('plan')} ({action.idempotency_key})"
            lines.append(f"{action.subscription_id:<32} {action.kind:<32} {action.result:<9} {detail}")
    else:
        lines.append("No downgrades due and no drift found.")
    return "\n".join(lines)
