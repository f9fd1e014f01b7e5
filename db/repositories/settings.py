"""`app_settings`: small keyed JSON values (kill switches, browser sessions and their handover
tokens, the go-live time, alerts sent, the secret roll's state). One row per key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, or_, select

from db.models import AppSetting
from db.models.base import utcnow
from db.session import UnitOfWork, rows_affected


def get(uow: UnitOfWork, key: str) -> AppSetting | None:
    """One primary-key read."""
    return uow.session.get(AppSetting, key)


def many(uow: UnitOfWork, keys: Iterable[str]) -> dict[str, AppSetting]:
    """The rows of these keys that exist, by key."""
    return {row.key: row for row in uow.session.execute(
        select(AppSetting).where(AppSetting.key.in_(list(keys)))).scalars()}


def with_prefixes(uow: UnitOfWork, *prefixes: str) -> list[AppSetting]:
    """Every row whose key starts with one of `prefixes`."""
    return list(uow.session.execute(select(AppSetting).where(
        or_(*(AppSetting.key.like(f"{prefix}%") for prefix in prefixes)))).scalars())


def add(uow: UnitOfWork, key: str, value: dict[str, Any], *, updated_by: str | None = None) -> AppSetting:
    row = AppSetting(key=key, value=value, updated_by=updated_by)
    uow.session.add(row)
    return row


def remove(uow: UnitOfWork, row: AppSetting) -> None:
    uow.session.delete(row)


def delete_key(uow: UnitOfWork, key: str) -> int:
    """A conditional delete: of two racing callers only one removes the row (returns 1)."""
    return rows_affected(uow.session.execute(delete(AppSetting).where(AppSetting.key == key)))


def value(uow: UnitOfWork, key: str) -> dict[str, Any]:
    """The stored document (a copy), or {} when the key was never written."""
    row = uow.session.get(AppSetting, key)
    return dict(row.value) if row is not None else {}


def put(uow: UnitOfWork, key: str, document: dict[str, Any], *, actor: str | None = None) -> AppSetting:
    """Write the document under `key` (a new dict, so the JSON column is written), noting who
    and when when an actor is given."""
    row = uow.session.get(AppSetting, key)
    if row is None:
        row = AppSetting(key=key, value=document)
        uow.session.add(row)
    else:
        row.value = document
    if actor is not None:
        row.updated_by = actor
        row.updated_at = utcnow()
    return row
