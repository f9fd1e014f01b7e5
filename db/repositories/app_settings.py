"""`app_settings`: small JSON documents the console keeps by key (go-live time, alerts sent,
the secret roll's state)."""

from __future__ import annotations

from typing import Any

from db.models import AppSetting
from db.models.base import utcnow
from db.session import UnitOfWork


def get(uow: UnitOfWork, key: str) -> AppSetting | None:
    return uow.session.get(AppSetting, key)


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
