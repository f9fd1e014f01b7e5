"""The words and units people read for every runbook metric, in one place.

Metric names (`stripe.subscription.plan.changed`) are for machines; the First-24h board,
dunning and snapshots show these labels. `tests` check every metric has one."""

from __future__ import annotations

from services import metric_points as m

LABELS: dict[str, str] = {
    m.WEBHOOK_RECEIVED: "Webhooks received",
    m.WEBHOOK_DUPLICATE: "Duplicate deliveries",
    m.WEBHOOK_IGNORED: "Ignored event types",
    m.WEBHOOK_INVALID_SIGNATURE: "Invalid signatures",
    m.EVENTS_BACKFILLED: "Backfilled (Events API)",  # short enough for a board tile at the default width
    m.SUBSCRIPTION_PREVIEW: "Plan-change previews",
    m.SUBSCRIPTION_CHANGE: "Plan changes",
    m.PLAN_CHANGED: "Plan changes confirmed by Stripe",
    m.DOWNGRADE_SCHEDULED: "Downgrades scheduled",
    m.DOWNGRADE_APPLIED: "Downgrades applied",
    m.RECONCILE_RUN: "Reconciliation runs",
    m.CHANGE_ERROR: "Plan-change errors",
    m.INVOICE_PAID: "Invoices paid",
    m.INVOICE_FAILED: "Invoice payment failures",
    m.INVOICE_ACTION_REQUIRED: "Invoices needing customer action (SCA)",
    m.DUNNING_ENTERED: "Entered dunning",
    m.DUNNING_RECOVERED: "Recovered from dunning",
    m.SCA_ENTERED: "Entered SCA",
    m.SCA_COMPLETED: "SCA completed",
}


def label(name: str) -> str:
    """The readable label of a metric; an unknown name reads as words, never as a dotted id."""
    if name in LABELS:
        return LABELS[name]
    tail = name.removeprefix("stripe.").replace(".", " ").replace("_", " ")
    return tail[:1].upper() + tail[1:]


def percent(share: float | None) -> str:
    """A share as people read it: "43 %", or "n/a" when there is nothing to divide."""
    return "n/a" if share is None else f"{share * 100:.0f} %"


def hours(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} h"
