from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class Dispute(Base):
    __tablename__ = "disputes"
    # The queue's pages and tiles read from this index alone (migration 0010).
    __table_args__ = (Index("ix_disputes_status_due_by_currency_amount", "status", "due_by", "currency", "amount"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # dp_...
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_email: Mapped[str | None] = mapped_column(Text, index=True)
    amount: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    reason: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    due_by: Mapped[datetime | None] = mapped_column(index=True)
    has_evidence: Mapped[bool] = mapped_column(default=False)
    submission_count: Mapped[int] = mapped_column(default=0)
    is_charge_refundable: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime | None] = mapped_column(index=True)
    closed_at: Mapped[datetime | None]
    # Submitted evidence is frozen here; once set the form is read-only.
    submitted_at: Mapped[datetime | None]
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    accepted_at: Mapped[datetime | None]
    accepted_by: Mapped[str | None] = mapped_column(String(255))
    stripe_updated: Mapped[int] = mapped_column(default=0)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DisputeEvidenceDraft(Base):
    """The local draft of a dispute's evidence: text fields and staged file ids."""

    __tablename__ = "dispute_evidence_drafts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    dispute_id: Mapped[str] = mapped_column(String(255), unique=True)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # evidence field -> {"file_id": "file_...", "filename": ..., "size": ...}
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=0)
    staged_to_stripe_at: Mapped[datetime | None]
    updated_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    notes: Mapped[str | None] = mapped_column(Text)


class DisputeEvidenceFile(Base):
    """A copy of each evidence file we uploaded to Stripe (purpose dispute_evidence), so the
    evidence can be read back with previews after it is submitted. Stripe keeps the original."""

    __tablename__ = "dispute_evidence_files"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    dispute_id: Mapped[str] = mapped_column(String(255), index=True)
    evidence_field: Mapped[str] = mapped_column(String(64))
    stripe_file_id: Mapped[str] = mapped_column(String(255), unique=True)
    filename: Mapped[str] = mapped_column(Text)
    file_type: Mapped[str] = mapped_column(String(8))  # pdf | jpg | png, sniffed from the bytes
    size: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str | None] = mapped_column(String(255))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
