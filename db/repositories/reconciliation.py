"""Reconciliation runs and their actions (`reconcile_runs`, `reconcile_actions`): the run's
writes, the downgrade claim, and what the pages and alerts read. The reads take the trigger to leave out or keep
(services/webhook_counts.QA_TRIGGER: the QA matrix's runs stay out of production history)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from db.models import ReconcileAction, ReconcileRun, UserSubscription
from db.repositories.locks import RECONCILE_CLAIM_LOCK, advisory_xact_lock
from db.session import UnitOfWork


def add(uow: UnitOfWork, row: ReconcileRun | ReconcileAction) -> None:
    uow.session.add(row)


def add_actions(uow: UnitOfWork, rows: list[ReconcileAction]) -> None:
    """Insert and flush, so each row has its id."""
    uow.session.add_all(rows)
    uow.session.flush()


def action(uow: UnitOfWork, action_id: int) -> ReconcileAction | None:
    return uow.session.get(ReconcileAction, int(action_id))


def subscription_plans(uow: UnitOfWork) -> dict[str, tuple[str | None, str | None]]:
    """subscription id -> (plan, interval) as the billing DB has them."""
    rows = uow.session.execute(
        select(UserSubscription.stripe_subscription_id, UserSubscription.plan, UserSubscription.interval))
    return {row[0]: (row[1], row[2]) for row in rows}


def decided_findings(uow: UnitOfWork, kinds: Iterable[str], results: Iterable[str]) -> list[ReconcileAction]:
    """Findings of these kinds with these results, newest first."""
    return list(uow.session.execute(
        select(ReconcileAction)
        .where(ReconcileAction.kind.in_(list(kinds)), ReconcileAction.result.in_(list(results)))
        .order_by(ReconcileAction.id.desc())
    ).scalars())


def lock_claims(uow: UnitOfWork) -> None:
    """Serialise downgrade claims across PostgreSQL sessions (SQLite: BEGIN IMMEDIATE)."""
    advisory_xact_lock(uow, RECONCILE_CLAIM_LOCK)


def claimed(uow: UnitOfWork, *, key: str, kind: str) -> ReconcileAction | None:
    """The pending or applied action already holding this idempotency key."""
    return uow.session.execute(
        select(ReconcileAction).where(
            ReconcileAction.idempotency_key == key,
            ReconcileAction.kind == kind,
            ReconcileAction.result.in_(("pending", "applied")),
        )
    ).scalars().first()


def stale_pending(uow: UnitOfWork, *, kind: str, run_id: int,
                  stale_before: datetime) -> list[tuple[int, str, dict[str, Any] | None, str | None]]:
    """(id, subscription, after, key) of pending actions of other runs that finished, or that
    are older than `stale_before`: their worker died between the Stripe call and the DB write."""
    rows = uow.session.execute(
        select(ReconcileAction.id, ReconcileAction.stripe_subscription_id, ReconcileAction.after,
               ReconcileAction.idempotency_key)
        .join(ReconcileRun, ReconcileRun.id == ReconcileAction.run_id)
        .where(
            ReconcileAction.kind == kind,
            ReconcileAction.result == "pending",
            ReconcileAction.run_id != run_id,
            (ReconcileRun.finished_at.is_not(None)) | (ReconcileAction.at < stale_before),
        )
    ).all()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def finish_run(uow: UnitOfWork, run_id: int, **values: Any) -> None:
    uow.session.execute(
        update(ReconcileRun).where(ReconcileRun.id == run_id).values(**values)
        .execution_options(synchronize_session=False)
    )


def recent_runs(uow: UnitOfWork, *, trigger: str, only: bool, limit: int) -> list[ReconcileRun]:
    """Newest first: runs of `trigger` (only=True) or every other run."""
    which = ReconcileRun.trigger == trigger if only else ReconcileRun.trigger != trigger
    return list(uow.session.execute(
        select(ReconcileRun).where(which).order_by(ReconcileRun.id.desc()).limit(limit)).scalars())


def finished_runs(uow: UnitOfWork, *, mode: str, skip_trigger: str, limit: int) -> list[ReconcileRun]:
    """The latest finished runs of one mode not started by `skip_trigger`, newest first."""
    return list(uow.session.execute(
        select(ReconcileRun).where(ReconcileRun.finished_at.is_not(None), ReconcileRun.mode == mode,
                                  ReconcileRun.trigger != skip_trigger)
        .order_by(ReconcileRun.id.desc()).limit(limit)
    ).scalars())


def actions_of_run(uow: UnitOfWork, run_id: int, *, kinds: Iterable[str] | None = None,
                   results: Iterable[str] | None = None,
                   excluding: Iterable[str] | None = None) -> list[ReconcileAction]:
    """A run's actions in order, optionally only some kinds, with or without some results."""
    statement = select(ReconcileAction).where(ReconcileAction.run_id == run_id)
    if kinds is not None:
        statement = statement.where(ReconcileAction.kind.in_(list(kinds)))
    if results is not None:
        statement = statement.where(ReconcileAction.result.in_(list(results)))
    if excluding is not None:
        statement = statement.where(ReconcileAction.result.not_in(list(excluding)))
    return list(uow.session.execute(statement.order_by(ReconcileAction.id)).scalars())
