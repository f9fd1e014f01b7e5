"""DB leases in `worker_leases`: one row per job name, so several workers can
run side by side and only one of them does a job (e.g. reconciliation) per
window, while a dead worker's lease simply expires.

Acquire is atomic on SQLite and PostgreSQL without dialect-specific SQL: a
conditional UPDATE takes over an expired row (the row lock and the re-checked
WHERE make two takers exclusive on PostgreSQL; SQLite's BEGIN IMMEDIATE
serialises writers), and when no row exists, the primary key makes exactly one
INSERT win.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from db.models import WorkerLease
from db.models.base import from_unix, utcnow
from db.session import UnitOfWork

Moment = datetime | int | float | None


def _as_datetime(now: Moment) -> datetime:
    if now is None:
        return utcnow()
    if isinstance(now, datetime):
        return now
    moment = from_unix(now)
    assert moment is not None
    return moment


def acquire_lease(uow: UnitOfWork, name: str, holder: str, ttl_seconds: int, now: Moment = None) -> bool:
    """Take the lease `name` for `ttl_seconds` if nobody holds an unexpired one.

    `uow` is an un-entered unit of work: the lease is committed here so other
    workers see it at once. The holder's own unexpired lease is NOT re-taken:
    the lease doubles as the cron window, so one worker runs once per window.
    """
    moment = _as_datetime(now)
    expires_at = moment + timedelta(seconds=ttl_seconds)
    with uow:
        taken = uow.session.execute(
            update(WorkerLease)
            .where(WorkerLease.name == name, WorkerLease.expires_at <= moment)
            .values(holder=holder, expires_at=expires_at, acquired_at=moment)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            uow.commit()
            return True
        try:
            uow.session.add(WorkerLease(name=name, holder=holder, expires_at=expires_at, acquired_at=moment))
            uow.session.flush()
        except IntegrityError:
            # Another worker holds it (or inserted it a moment before us).
            uow.rollback()
            return False
        uow.commit()
        return True


def release_lease(uow: UnitOfWork, name: str, holder: str) -> bool:
    """Give the lease back early (only its holder can); True if it was held."""
    with uow:
        released = uow.session.execute(
            delete(WorkerLease)
            .where(WorkerLease.name == name, WorkerLease.holder == holder)
            .execution_options(synchronize_session=False)
        )
        uow.commit()
        return bool(released.rowcount)  # type: ignore[attr-defined]


def lease_holder(uow: UnitOfWork, name: str, now: Moment = None) -> str | None:
    """Who holds an unexpired lease `name`, if anyone."""
    moment = _as_datetime(now)
    with uow:
        lease = uow.session.get(WorkerLease, name)
        if lease is None or lease.expires_at <= moment:
            return None
        return lease.holder
