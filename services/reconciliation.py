"""Reconciliation: apply scheduled downgrades shortly before the period ends and report
drift between Stripe and the billing DB (the run and its exactly-once rules are described
in services/reconcile_run.py).

Split by job; this module is the one name the pages, the CLI, the worker and the boards
import it by:
- services/reconcile_rules.py: what one subscription needs (pure), the finding kinds;
- services/reconcile_run.py: the run (lease, claims, Stripe writes, stale recovery, cron);
- services/reconcile_report.py: the CLI's JSON and table;
- services/reconcile_fixes.py: the page's actions (dry run, apply a fix, dismiss);
- services/reconcile_queries.py: what the pages and alerts read.
"""

from __future__ import annotations

from services.reconcile_fixes import (
    ENDED_REFUSAL,
    FIXABLE_KINDS,
    MIN_DISMISS_REASON,
    FixResult,
    apply_drift_fix,
    describe_fix,
    dismiss_finding,
    has_working_fix,
    run_now_dry_run,
)
from services.reconcile_queries import (
    last_run,
    latest_drift,
    recent_runs,
    reconcile_alert,
    run_actions,
)
from services.reconcile_report import (
    format_run_table,
    run_to_json,
)
from services.reconcile_rules import (
    APPLY_DOWNGRADE,
    DRIFT_DESCRIPTIONS,
    DRIFT_KINDS,
    DRIFT_MISSING_IN_DB,
    DRIFT_PENDING_PAST_PERIOD_END,
    DRIFT_PENDING_WITHOUT_CANCEL,
    DRIFT_PLAN_MISMATCH,
    DRIFT_UNKNOWN_PRICE,
    ENDED_STATUSES,
    LOST_CUSTOMER,
    ActionReport,
    DueDowngrade,
    ReconcileError,
    ReconcileRefused,
    ReconcileReport,
    configuration_blockers,
    downgrade_key,
    evaluate,
    subscription_state,
)
from services.reconcile_run import (
    DECIDED_RESULTS,
    RECONCILE_LEASE,
    STALE_PENDING_SECONDS,
    run_reconcile_cron,
    run_reconciliation,
)

__all__ = [
    "APPLY_DOWNGRADE",
    "ActionReport",
    "DECIDED_RESULTS",
    "DRIFT_DESCRIPTIONS",
    "DRIFT_KINDS",
    "DRIFT_MISSING_IN_DB",
    "DRIFT_PENDING_PAST_PERIOD_END",
    "DRIFT_PENDING_WITHOUT_CANCEL",
    "DRIFT_PLAN_MISMATCH",
    "DRIFT_UNKNOWN_PRICE",
    "DueDowngrade",
    "ENDED_REFUSAL",
    "ENDED_STATUSES",
    "FIXABLE_KINDS",
    "FixResult",
    "LOST_CUSTOMER",
    "MIN_DISMISS_REASON",
    "RECONCILE_LEASE",
    "ReconcileError",
    "ReconcileRefused",
    "ReconcileReport",
    "STALE_PENDING_SECONDS",
    "apply_drift_fix",
    "configuration_blockers",
    "describe_fix",
    "dismiss_finding",
    "downgrade_key",
    "evaluate",
    "format_run_table",
    "has_working_fix",
    "last_run",
    "latest_drift",
    "recent_runs",
    "reconcile_alert",
    "run_actions",
    "run_now_dry_run",
    "run_reconcile_cron",
    "run_reconciliation",
    "run_to_json",
    "subscription_state",
]
