"""`app_settings`: small keyed JSON values (kill switches, browser sessions and their handover
tokens, the go-live time, the secret roll). One row per key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, or_, select

from db.models import AppSetting
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
