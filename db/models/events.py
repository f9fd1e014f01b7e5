"""The webhook inbox, metric points, worker leases and small app settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class StripeEvent(Base):
    """Every verified event, stored once by id before any effect (the inbox)."""

    __tablename__ = "stripe_events"
    # The delivery log filters by type or object and pages newest first (received_at, id): each
    # filter's index carries that order, so a page is an index range, not a sort of every match.
    __table_args__ = (
        Index("ix_stripe_events_received_at_id", "received_at", "id"),
        Index("ix_stripe_events_type_received_at", "type", "received_at", "id"),
        Index("ix_stripe_events_object_id_received_at", "object_id", "received_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(index=True)
    livemode: Mapped[bool] = mapped_column(default=False)
    api_version: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    # webhook | sync | replay: how the event reached us.
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # pending | processing | processed | ignored | failed | resolved (a poison event closed by hand)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    # The Stripe object the event is about, for "latest state wins" ordering checks.
    object_id: Mapped[str | None] = mapped_column(String(255))
    duplicate_deliveries: Mapped[int] = mapped_column(default=0)
    # Fingerprints (services/webhook_secrets.py, never the secret) of the configured signing
    # secrets that verified the first delivery, comma-separated; NULL when not a webhook delivery.
    signed_with: Mapped[str | None] = mapped_column(String(255))
    # "Mark resolved": who closed a poison event, when and why; the worker never retries it.
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(320))
    resolution_reason: Mapped[str | None] = mapped_column(Text)


class MetricPoint(Base):
    """One counted occurrence of a runbook metric (e.g. invoice.failed) at a time."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_name_at_value", "name", "at", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    value: Mapped[int] = mapped_column(default=1)
    # Plan, event type, ... for breakdowns; never PII.
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Dedupe key so replaying an event never counts twice (e.g. "evt_123:invoice.paid").
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)


class WorkerLease(Base):
    """A DB lease so only one worker runs a job (e.g. reconciliation) at a time."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime]
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppSetting(Base):
    """Small editable values such as the go-live time."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
