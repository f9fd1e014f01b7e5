"""Transaction-scoped advisory locks: PostgreSQL serialises the holders; SQLite needs none
(its BEGIN IMMEDIATE already lets one writer in at a time)."""

from __future__ import annotations

from sqlalchemy import text

from db.session import UnitOfWork

AUDIT_CHAIN_LOCK = 7243001
RECONCILE_CLAIM_LOCK = 7243008


def advisory_xact_lock(uow: UnitOfWork, lock_id: int) -> None:
    """Hold `lock_id` until the unit's transaction ends (PostgreSQL only)."""
    bind = uow.session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        uow.session.execute(text(f"SELECT pg_advisory_xact_lock({int(lock_id)})"))
