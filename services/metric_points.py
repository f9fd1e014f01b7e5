"""Recording the runbook's metrics (e.g. `invoice.failed`) as rows in metric_points.

The first-24h board aggregates these rows in SQL; the webhook receiver also
exposes Prometheus counters (webhooks/app.py). A `dedupe_key` (usually
"<event id>:<metric>") makes recording idempotent, so a replayed event or a
retried run never counts twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from db.models.base import utcnow
from db.repositories import metrics as metric_rows
from db.repositories.hours import dialect_name
from db.session import UnitOfWork
from services import metric_rollup
from services.fast_json import dumps_text

# The metric names the go-live runbook (section 7) asks engineers to watch.
WEBHOOK_RECEIVED = "stripe.webhook.received"
WEBHOOK_DUPLICATE = "stripe.webhook.duplicate"
WEBHOOK_IGNORED = "stripe.webhook.ignored"
WEBHOOK_INVALID_SIGNATURE = "stripe.webhook.invalid_signature"
# Verified events from the other Stripe mode (livemode differs from STRIPE_MODE), refused.
WEBHOOK_LIVEMODE_MISMATCH = "stripe.webhook.livemode_mismatch"
# Events first stored by `billing-ops sync` (Events API): never counted as received deliveries.
EVENTS_BACKFILLED = "stripe.events.backfilled"
SUBSCRIPTION_PREVIEW = "stripe.subscription.preview"
SUBSCRIPTION_CHANGE = "stripe.subscription.change"
PLAN_CHANGED = "stripe.subscription.plan.changed"
DOWNGRADE_SCHEDULED = "stripe.subscription.downgrade_scheduled"
DOWNGRADE_APPLIED = "stripe.subscription.downgrade.applied"
RECONCILE_RUN = "stripe.subscription.reconcile.run"
CHANGE_ERROR = "stripe.subscription.change.error"
INVOICE_PAID = "invoice.paid"
INVOICE_FAILED = "invoice.failed"
INVOICE_ACTION_REQUIRED = "invoice.action_required"
DUNNING_ENTERED = "stripe.dunning.entered"
DUNNING_RECOVERED = "stripe.dunning.recovered"
SCA_ENTERED = "stripe.sca.entered"
SCA_COMPLETED = "stripe.sca.completed"

ALL_METRICS = (
    WEBHOOK_RECEIVED,
    WEBHOOK_DUPLICATE,
    WEBHOOK_IGNORED,
    WEBHOOK_INVALID_SIGNATURE,
    EVENTS_BACKFILLED,
    SUBSCRIPTION_PREVIEW,
    SUBSCRIPTION_CHANGE,
    PLAN_CHANGED,
    DOWNGRADE_SCHEDULED,
    DOWNGRADE_APPLIED,
    RECONCILE_RUN,
    CHANGE_ERROR,
    INVOICE_PAID,
    INVOICE_FAILED,
    INVOICE_ACTION_REQUIRED,
    DUNNING_ENTERED,
    DUNNING_RECOVERED,
    SCA_ENTERED,
    SCA_COMPLETED,
)


# Points tagged {"test": true} come from QA-matrix runs or Stripe test clocks: they are kept
# out of production figures and alerts, and shown on their own.
TEST_TAG = metric_rollup.TEST_TAG
# Set while the QA matrix runs a case: every point recorded meanwhile is test activity.
_TEST_ACTIVITY: ContextVar[bool] = ContextVar("metric_points_test_activity", default=False)


@contextlib.contextmanager
def test_activity() -> Iterator[None]:
    """Tag every metric point recorded inside the block as test (QA-matrix) activity."""
    token = _TEST_ACTIVITY.set(True)
    try:
        yield
    finally:
        _TEST_ACTIVITY.reset(token)


def metric_row(
    name: str,
    *,
    at: datetime | None = None,
    value: int = 1,
    tags: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> dict[str, Any]:
    marked = {**(tags or {}), TEST_TAG: True} if _TEST_ACTIVITY.get() else (tags or {})
    return {"name": name, "at": at or utcnow(), "value": value, "tags": marked, "dedupe_key": dedupe_key}


# Set by `batched`: the unit of work whose points wait to be written together, and the points.
_PENDING: ContextVar[tuple[UnitOfWork, list[dict[str, Any]]] | None] = ContextVar("metric_points_pending",
                                                                                   default=None)


@contextlib.contextmanager
def batched(uow: UnitOfWork) -> Iterator[list[dict[str, Any]]]:
    """Inside the block, `record_metric` on `uow` only collects its point (and says True); the caller
    writes them with `record_metrics(uow, points)` before it commits, or drops them (`points.clear()`)
    when it rolls back. One multi-row statement for a batch of events instead of one per point: the
    unique dedupe_key still decides which go in, and the rollup gets the same sums."""
    points: list[dict[str, Any]] = []
    token = _PENDING.set((uow, points))
    try:
        yield points
    finally:
        _PENDING.reset(token)


def record_metric(
    uow: UnitOfWork,
    name: str,
    *,
    at: datetime | None = None,
    value: int = 1,
    tags: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Add one point inside the caller's transaction; False if `dedupe_key` was already counted.
    The unique key decides, so two workers replaying one event at once still count it once.
    The point's hour in the rollup (services/metric_rollup.py) goes up with it."""
    row = metric_row(name, at=at, value=value, tags=tags, dedupe_key=dedupe_key)
    pending = _PENDING.get()
    if pending is not None and pending[0] is uow:
        pending[1].append(row)  # written with the batch's others by `batched` (its dedupe_key decides then)
        return True
    inserted = metric_rows.insert_point(uow, row)
    if inserted:
        metric_rollup.add_points(uow, [row])
    return inserted


def record_metrics(uow: UnitOfWork, rows: Sequence[dict[str, Any]]) -> None:
    """Add many `metric_row`s in one statement; rows whose `dedupe_key` was already counted are
    skipped. The rollup gets the points that went in, in the same transaction. PostgreSQL: one
    statement for both (the batch as one JSON document through json_to_recordset, whatever its
    size one short prepared statement; psycopg's executemany would send a statement per row).
    SQLite: multi-row INSERTs (services/sqlite_bulk.py)."""
    if not rows:
        return
    if dialect_name(uow) == "postgresql":
        metric_rows.insert_points_and_roll_up_postgres(uow, dumps_text(list(rows)), shard=metric_rollup.shard())
        return
    from services import sqlite_bulk

    record_metrics_sqlite(sqlite_bulk.session_execute(uow.session), rows)


def record_metrics_sqlite(execute: Any, rows: Sequence[dict[str, Any]]) -> None:
    """record_metrics on SQLite through a sqlite_bulk.Execute (a Session's connection, or the
    receiver writer's own sqlite3 connection): the points that went in, then their hours."""
    from services import sqlite_bulk

    ordered = metric_rollup.hour_sums(sqlite_bulk.insert_points(execute, rows))
    if ordered:
        sqlite_bulk.add_to_rollup(execute, ordered, shard=metric_rollup.shard())


# SQL: tagged as QA / test-clock activity, and its opposite (db/repositories/metrics.py).
test_points = metric_rows.test_points
production_points = metric_rows.production_points
