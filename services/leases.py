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

from db.models.base import from_unix, utcnow
from db.repositories import leases as lease_rows
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
        if lease_rows.take_expired(uow, name, holder, moment=moment, expires_at=expires_at):
            uow.commit()
            return True
        if not lease_rows.insert(uow, name, holder, moment=moment, expires_at=expires_at):
            return False  # another worker holds it (or inserted it a moment before us)
        uow.commit()
        return True


def release_lease(uow: UnitOfWork, name: str, holder: str) -> bool:
    """Give the lease back early (only its holder can); True if it was held."""
    with uow:
        released = lease_rows.delete_held(uow, name, holder)
        uow.commit()
        return released


def lease_holder(uow: UnitOfWork, name: str, now: Moment = None) -> str | None:
    """Who holds an unexpired lease `name`, if anyone."""
    moment = _as_datetime(now)
    with uow:
        lease = lease_rows.get(uow, name)
        if lease is None or lease.expires_at <= moment:
            return None
        return lease.holder
