from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class ReconcileRun(Base):
    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    mode: Mapped[str] = mapped_column(String(16))  # dry-run | apply
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # cli | cron | page (manual: older runs)
    actor: Mapped[str | None] = mapped_column(String(255))
    examined: Mapped[int] = mapped_column(default=0)
    applied: Mapped[int] = mapped_column(default=0)
    drift: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    list_calls: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    lookahead_seconds: Mapped[int] = mapped_column(default=900)


class ReconcileAction(Base):
    __tablename__ = "reconcile_actions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reconcile_runs.id"), index=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), index=True)
    # apply_downgrade | drift_pending_without_cancel | drift_pending_past_period_end |
    # drift_plan_mismatch | drift_missing_in_db | drift_unknown_price
    kind: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[str] = mapped_column(String(32))  # planned | applied | skipped | error | fixed
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)
