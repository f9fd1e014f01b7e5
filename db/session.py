"""Engine construction and the unit of work services use (cosmicpython style)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()

# How long SQLite waits on a lock held by another process (receiver, worker, console).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook below emit BEGIN instead of the driver (SQLAlchemy's recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _configure_sqlite)
        # pysqlite's own transaction handling defers BEGIN; issue it ourselves so
        # SELECT ... then UPDATE in one unit of work is a real transaction.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (connecting would create
    it, so read-only commands such as `check` ask first), else None."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return None if Path(parsed.database).exists() else parsed.database


def get_engine(url: str) -> Engine:
    """One engine per URL per process."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


class UnitOfWork:
    """Owns one DB transaction. Services call `commit()` explicitly; leaving the
    block without it rolls back, so a crash half-way changes nothing."""

    session: Session

    def __init__(self, engine_or_url: Engine | Connection | str, *, audit_key: bytes | None = None) -> None:
        # A Connection (the receiver's writer keeps one) makes each unit a transaction on it.
        engine = get_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self._session_factory = sessionmaker(bind=engine, expire_on_commit=False)
        # The audit chain's HMAC key (AUDIT_HMAC_KEY); audit rows written through this unit use it.
        self.audit_key = audit_key

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back anything uncommitted but, unlike rollback(), leaves
        # already-loaded rows readable (detached), so services can return them.
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


def rows_affected(result: Any) -> int:
    """Rows matched by an UPDATE/DELETE (a CursorResult's rowcount; typed loosely by SQLAlchemy)."""
    return int(getattr(result, "rowcount", 0) or 0)


def insert_ignoring_conflicts(session: Session, model: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the session's database: a unique key decides
    in one statement, with no SELECT first and no IntegrityError to unwind (add
    `.returning(...)` to learn whether the row went in)."""
    bind = session.get_bind()
    dialect_insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    return dialect_insert(model).on_conflict_do_nothing()
