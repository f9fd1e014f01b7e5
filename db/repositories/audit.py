"""The audit log's queries: the chain head, the rows in order, the page's filters, the
anchors frozen into snapshots and sign-offs, and the reads of sign-in and preflight rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from db.models import AuditLog, MetricsSnapshot, Signoff
from db.repositories.locks import AUDIT_CHAIN_LOCK, advisory_xact_lock
from db.session import UnitOfWork


def lock_chain(uow: UnitOfWork) -> None:
    """Serialise appenders so the chain never forks."""
    advisory_xact_lock(uow, AUDIT_CHAIN_LOCK)


def last_hash(uow: UnitOfWork) -> str | None:
    return uow.session.execute(select(AuditLog.row_hash).order_by(AuditLog.id.desc()).limit(1)).scalar()


def add(uow: UnitOfWork, row: AuditLog) -> AuditLog:
    uow.session.add(row)
    uow.session.flush()
    return row


def head(uow: UnitOfWork) -> tuple[int | None, str | None, int]:
    """(newest id, its hash, number of rows)."""
    newest = uow.session.execute(select(AuditLog.id, AuditLog.row_hash).order_by(AuditLog.id.desc()).limit(1)).first()
    rows = int(uow.session.execute(select(func.count()).select_from(AuditLog)).scalar_one())
    return (newest[0], newest[1], rows) if newest else (None, None, rows)


def in_order(uow: UnitOfWork) -> Iterator[AuditLog]:
    """Every row, oldest first (the chain walk)."""
    yield from uow.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars()


def anchor_sources(uow: UnitOfWork) -> list[tuple[str, Any, datetime]]:
    """(where, the frozen anchor or None, when the record was written) for every metrics
    snapshot and sign-off."""
    sources: list[tuple[str, Any, datetime]] = []
    for snapshot in uow.session.execute(select(MetricsSnapshot)).scalars():
        sources.append((f"metrics snapshot {snapshot.id}", (snapshot.figures or {}).get("audit_anchor"),
                        snapshot.created_at))
    for signoff in uow.session.execute(select(Signoff)).scalars():
        sources.append((f"sign-off {signoff.id}", (signoff.preflight or {}).get("audit_anchor"), signoff.signed_at))
    return sources


def distinct_actions(uow: UnitOfWork) -> list[str]:
    return list(uow.session.execute(select(AuditLog.action).distinct().order_by(AuditLog.action)).scalars())


def distinct_results(uow: UnitOfWork) -> list[str]:
    return list(uow.session.execute(select(AuditLog.result).distinct().order_by(AuditLog.result)).scalars())


def filtered(uow: UnitOfWork, *, actor: str | None = None, action: str | None = None, target: str | None = None,
             result: str | None = None, since: datetime | None = None, until: datetime | None = None,
             limit: int = 500, offset: int = 0) -> list[AuditLog]:
    """Newest first; actor and target match anywhere, case-insensitively."""
    query = select(AuditLog).order_by(AuditLog.id.desc())
    if actor:
        query = query.where(AuditLog.actor.ilike(f"%{actor.strip()}%"))
    if action:
        query = query.where(AuditLog.action == action)
    if target:
        query = query.where(AuditLog.target.ilike(f"%{target.strip()}%"))
    if result:
        query = query.where(AuditLog.result == result)
    if since:
        query = query.where(AuditLog.at >= since)
    if until:
        query = query.where(AuditLog.at <= until)
    return list(uow.session.execute(query.limit(limit).offset(offset)).scalars())


def latest_of(uow: UnitOfWork, action: str) -> AuditLog | None:
    """The newest row of one action."""
    return uow.session.execute(select(AuditLog).where(AuditLog.action == action)
                               .order_by(AuditLog.id.desc()).limit(1)).scalar_one_or_none()


def times_of(uow: UnitOfWork, action: str, *, since: datetime, actor: str,
             target: str) -> list[tuple[datetime, str, str | None]]:
    """(at, actor, target) of `action` rows since `since` by `actor` or on `target`."""
    rows = uow.session.execute(
        select(AuditLog.at, AuditLog.actor, AuditLog.target).where(
            AuditLog.action == action, AuditLog.at >= since,
            (AuditLog.actor == actor) | (AuditLog.target == target),
        )
    ).all()
    return [(row.at, row.actor, row.target) for row in rows]
