"""QA-matrix runs and results (`qa_runs`, `qa_results`)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select

from db.models import QaResult, QaRun
from db.session import UnitOfWork


def add(uow: UnitOfWork, row: QaRun | QaResult) -> None:
    """Insert and flush, so the row has its id."""
    uow.session.add(row)
    uow.session.flush()


def run(uow: UnitOfWork, run_id: int) -> QaRun | None:
    return uow.session.get(QaRun, run_id)


def results_newest_first(uow: UnitOfWork, *, version: str | None = None) -> Iterator[QaResult]:
    """Every result (of one code version when given), newest first; read lazily so a caller
    that has what it needs stops early."""
    query = select(QaResult).order_by(QaResult.id.desc())
    if version is not None:
        query = query.where(QaResult.code_version == version)
    yield from uow.session.execute(query).scalars()


def recent_runs(uow: UnitOfWork, *, limit: int) -> list[QaRun]:
    return list(uow.session.execute(select(QaRun).order_by(QaRun.id.desc()).limit(limit)).scalars())
