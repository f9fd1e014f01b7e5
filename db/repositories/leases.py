"""`worker_leases`: one row per job name. The writes are conditional so two workers never
both hold a lease (see services/leases.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from db.models import WorkerLease
from db.session import UnitOfWork, rows_affected


def take_expired(uow: UnitOfWork, name: str, holder: str, *, moment: datetime, expires_at: datetime) -> bool:
    """Take over the row `name` if its lease has expired (a conditional UPDATE)."""
    taken = uow.session.execute(
        update(WorkerLease)
        .where(WorkerLease.name == name, WorkerLease.expires_at <= moment)
        .values(holder=holder, expires_at=expires_at, acquired_at=moment)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(taken) == 1


def insert(uow: UnitOfWork, name: str, holder: str, *, moment: datetime, expires_at: datetime) -> bool:
    """Insert the row `name`; False (and the transaction rolled back) when one exists already."""
    try:
        uow.session.add(WorkerLease(name=name, holder=holder, expires_at=expires_at, acquired_at=moment))
        uow.session.flush()
    except IntegrityError:
        uow.rollback()
        return False
    return True


def delete_held(uow: UnitOfWork, name: str, holder: str) -> bool:
    released = uow.session.execute(
        delete(WorkerLease)
        .where(WorkerLease.name == name, WorkerLease.holder == holder)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(released) > 0


def get(uow: UnitOfWork, name: str) -> WorkerLease | None:
    return uow.session.get(WorkerLease, name)
