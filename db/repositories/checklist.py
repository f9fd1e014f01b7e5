"""`checklist_items`: the go-live checklist, one row per item key."""

from __future__ import annotations

from sqlalchemy import select

from db.models import ChecklistItem
from db.session import UnitOfWork


def keys(uow: UnitOfWork) -> set[str]:
    return set(uow.session.execute(select(ChecklistItem.key)).scalars())


def add(uow: UnitOfWork, item: ChecklistItem) -> None:
    uow.session.add(item)


def every(uow: UnitOfWork) -> list[ChecklistItem]:
    return list(uow.session.execute(select(ChecklistItem).order_by(ChecklistItem.id)).scalars())


def by_key(uow: UnitOfWork, key: str) -> ChecklistItem | None:
    return uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == key)).scalar_one_or_none()
