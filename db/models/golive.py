from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class QaRun(Base):
    __tablename__ = "qa_runs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    actor: Mapped[str | None] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(8), default="test")
    code_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | passed | failed


class QaResult(Base):
    __tablename__ = "qa_results"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("qa_runs.id"), index=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # passed | failed | error | manual_pass | manual_fail
    manual: Mapped[bool] = mapped_column(default=False)
    failed_expectation: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notes: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))
    code_version: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ChecklistItem(Base):
    __tablename__ = "checklist_items"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    section: Mapped[str] = mapped_column(String(64))  # e.g. ops_readiness | rollback
    title: Mapped[str] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done | n/a
    note: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime | None]


class MetricsSnapshot(Base):
    """A frozen copy of the first-24h board for a window (immutable once written)."""

    __tablename__ = "metrics_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    figures: Mapped[dict[str, Any]]
    content_sha256: Mapped[str] = mapped_column(String(64))


class Signoff(Base):
    __tablename__ = "signoffs"
    # One signature per role per launch, even when two people click at the same moment.
    __table_args__ = (UniqueConstraint("launch_key", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # One launch record; both signatures point at it.
    launch_key: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))  # eng_lead | product_owner
    signer: Mapped[str] = mapped_column(String(320))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)
    code_version: Mapped[str | None] = mapped_column(String(64))
    preflight: Mapped[dict[str, Any]] = mapped_column(default=dict)
    qa_results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("metrics_snapshots.id"))
    # The metrics snapshot as frozen at signing (id, window, sha256, figures).
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    note: Mapped[str | None] = mapped_column(Text)
