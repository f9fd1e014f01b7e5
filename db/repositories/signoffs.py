"""`signoffs`: one row per (launch, role); the unique key decides a race between two signers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.models import Signoff
from db.session import UnitOfWork


def of_launch(uow: UnitOfWork, launch_key: str) -> list[Signoff]:
    return list(uow.session.execute(
        select(Signoff).where(Signoff.launch_key == launch_key).order_by(Signoff.id)).scalars())


def every(uow: UnitOfWork) -> list[Signoff]:
    return list(uow.session.execute(select(Signoff).order_by(Signoff.id)).scalars())


def insert(uow: UnitOfWork, row: Signoff) -> bool:
    """Add a signature; False (transaction rolled back) when that role of the launch is taken."""
    uow.session.add(row)
    try:
        uow.session.flush()
    except IntegrityError:
        uow.rollback()
        return False
    return True
