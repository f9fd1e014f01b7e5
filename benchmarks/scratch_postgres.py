"""A throwaway PostgreSQL database for a benchmark, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

ADMIN_DSN = "host=127.0.0.1 user=postgres dbname=test"


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[str | None]:
    """Yield a SQLAlchemy URL for a fresh database, or None (with the reason printed) when
    PostgreSQL is unreachable."""
    try:
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as error:  # noqa: BLE001 (any failure means: skip PostgreSQL)
        print(f"PostgreSQL skipped: {error.__class__.__name__}")
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from db.session import dispose_engines

        dispose_engines()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
