"""Append-only audit log with a hash chain, and the `privileged` guard.

Each row stores the hash of the previous row; `verify_chain` recomputes the
chain and names the first row that was edited, or that follows a deleted one.
Every privileged service function is wrapped by `privileged(...)`, which
checks the actor is an admin and writes a `denied` row when not, so denials
are recorded even though nothing else happens.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import select, text

from db.models import AuditLog
from db.models.base import utcnow
from db.session import UnitOfWork
from services.auth import AccessDenied, is_admin, normalise_email
from services.config import Settings
from services.observability import scrub_text, scrub_value

GENESIS_HASH = "0" * 64

P = ParamSpec("P")
R = TypeVar("R")


def _row_digest(prev_hash: str, row: AuditLog) -> str:
    body = json.dumps(
        {
            "prev": prev_hash,
            "at": row.at.isoformat(timespec="microseconds"),
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "idempotency_key": row.idempotency_key,
            "result": row.result,
            "details": row.details,
            "error": row.error,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def record(
    uow: UnitOfWork,
    *,
    actor: str | None,
    action: str,
    result: str,
    target: str | None = None,
    idempotency_key: str | None = None,
    details: dict[str, Any] | None = None,
    error: str | None = None,
) -> AuditLog:
    """Append one row inside the caller's transaction (committed with the action)."""
    session = uow.session
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        # Serialise appenders so the chain never forks; SQLite's BEGIN IMMEDIATE already does.
        session.execute(text("SELECT pg_advisory_xact_lock(7243001)"))
    last = session.execute(select(AuditLog.row_hash).order_by(AuditLog.id.desc()).limit(1)).scalar()
    prev_hash = last or GENESIS_HASH
    row = AuditLog(
        at=utcnow(),
        actor=(actor or "anonymous")[:320],
        action=action,
        target=target,
        idempotency_key=idempotency_key,
        result=result,
        details=scrub_value(details or {}),
        error=scrub_text(error) if error else None,
        prev_hash=prev_hash,
    )
    row.row_hash = _row_digest(prev_hash, row)
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    rows_checked: int
    first_broken_id: int | None = None
    problem: str | None = None


def verify_chain(uow: UnitOfWork) -> ChainVerification:
    with uow:
        prev_hash = GENESIS_HASH
        checked = 0
        for row in uow.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars():
            if row.prev_hash != prev_hash:
                return ChainVerification(False, checked, row.id, "a row before this one was deleted or edited")
            if _row_digest(prev_hash, row) != row.row_hash:
                return ChainVerification(False, checked, row.id, "this row was edited after it was written")
            prev_hash = row.row_hash
            checked += 1
        return ChainVerification(True, checked)


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 500
    offset: int = 0


AUDIT_CSV_COLUMNS = ("id", "at", "actor", "action", "target", "idempotency_key", "result", "error", "row_hash")


def entries_as_rows(entries: list[AuditLog]) -> list[dict[str, Any]]:
    """Plain rows for tables and CSV export, in AUDIT_CSV_COLUMNS order."""
    return [{column: getattr(entry, column) for column in AUDIT_CSV_COLUMNS} for entry in entries]


def distinct_values(uow: UnitOfWork) -> dict[str, list[str]]:
    """Actions and results present, for the page's filter choices."""
    with uow:
        actions = uow.session.execute(select(AuditLog.action).distinct().order_by(AuditLog.action)).scalars()
        results = uow.session.execute(select(AuditLog.result).distinct().order_by(AuditLog.result)).scalars()
        return {"actions": list(actions), "results": list(results)}


def list_entries(uow: UnitOfWork, flt: AuditFilter) -> list[AuditLog]:
    with uow:
        query = select(AuditLog).order_by(AuditLog.id.desc())
        if flt.actor:
            query = query.where(AuditLog.actor.ilike(f"%{flt.actor.strip()}%"))
        if flt.action:
            query = query.where(AuditLog.action == flt.action)
        if flt.target:
            query = query.where(AuditLog.target.ilike(f"%{flt.target.strip()}%"))
        if flt.result:
            query = query.where(AuditLog.result == flt.result)
        if flt.since:
            query = query.where(AuditLog.at >= flt.since)
        if flt.until:
            query = query.where(AuditLog.at <= flt.until)
        return list(uow.session.execute(query.limit(flt.limit).offset(flt.offset)).scalars())


# --- the privileged guard ------------------------------------------------------

PRIVILEGED_ACTIONS: dict[str, Callable[..., Any]] = {}


def require_admin_actor(actor: str | None, settings: Settings) -> str:
    email = normalise_email(actor)
    if email is None or not is_admin(email, settings):
        raise AccessDenied("You do not have access to this action.")
    return email


def privileged(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a service function taking `actor`, `settings` and `uow` keyword or
    positional arguments: non-admins get AccessDenied and a `denied` audit row."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        for required in ("actor", "settings", "uow"):
            if required not in signature.parameters:
                raise TypeError(f"{fn.__qualname__} must take '{required}' to be privileged")

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            actor = bound.arguments["actor"]
            settings: Settings = bound.arguments["settings"]
            uow: UnitOfWork = bound.arguments["uow"]
            try:
                require_admin_actor(actor, settings)
            except AccessDenied:
                target = next(
                    (str(v) for k, v in bound.arguments.items() if k.endswith("_id") and isinstance(v, str | int)),
                    None,
                )
                with uow:
                    record(uow, actor=str(actor or "anonymous"), action=action, result="denied", target=target)
                    uow.commit()
                raise
            return fn(*args, **kwargs)

        guarded.privileged_action = action  # type: ignore[attr-defined]
        PRIVILEGED_ACTIONS[action] = guarded
        return guarded

    return decorate
