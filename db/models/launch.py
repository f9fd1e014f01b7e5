"""Launch-day records: the guided live smoke test and resolutions of plan-change errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class SmokeTest(Base):
    """One guided smoke test: a Checkout Session the console created, what arrived, each check."""

    __tablename__ = "smoke_tests"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_by: Mapped[str] = mapped_column(String(320))
    mode: Mapped[str] = mapped_column(String(8))  # test | live
    price_id: Mapped[str] = mapped_column(String(255))
    # open | completed (Checkout done, checks due) | passed | failed | refunded | cleanup_failed
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    completed_event_id: Mapped[str | None] = mapped_column(String(255))
    completed_at: Mapped[datetime | None]
    customer_id: Mapped[str | None] = mapped_column(String(255))
    subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    refund_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None]  # minor units of `currency`
    currency: Mapped[str | None] = mapped_column(String(3))
    # [{"step", "passed", "detail", "ids", "at"}] in the order they ran
    steps: Mapped[list[Any]] = mapped_column(default=list)
    finished_at: Mapped[datetime | None]
    finished_by: Mapped[str | None] = mapped_column(String(320))


class ChangeErrorResolution(Base):
    """A plan-change error (an audit row with result `error`) marked resolved, with a note."""

    __tablename__ = "change_error_resolutions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # The audit row of the error (no foreign key: the audit log stays append-only and self-contained).
    audit_id: Mapped[int] = mapped_column(unique=True)
    note: Mapped[str] = mapped_column(Text)
    resolved_by: Mapped[str] = mapped_column(String(320))
    resolved_at: Mapped[datetime] = mapped_column(default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
