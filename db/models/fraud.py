from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class FraudWarning(Base):
    """A Radar early fraud warning and the ops decision on it.

    `status` is ours (open | refunded | ignored); a later
    radar.early_fraud_warning.updated event refreshes Stripe's fields only.
    """

    __tablename__ = "fraud_warnings"
    # The queue reads each run of its order in order, and its tiles, from the first index (migration
    # 0011); the funnel a period's warnings from the second (0010).
    __table_args__ = (
        Index("ix_fraud_warnings_queue_state", "status", "created", "actionable", "charge_disputed",
              "charge_amount_refunded", "currency", "amount", "charge_id"),
        Index("ix_fraud_warnings_funnel", "created", "status", "decided_at", "currency", "charge_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # issfr_...
    charge_id: Mapped[str] = mapped_column(String(255), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_email: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    fraud_type: Mapped[str | None] = mapped_column(String(64), index=True)
    actionable: Mapped[bool] = mapped_column(default=True, index=True)
    created: Mapped[datetime | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    action: Mapped[str | None] = mapped_column(String(32))  # refund | ignore | reopen
    actor: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]
    refund_id: Mapped[str | None] = mapped_column(String(255))
    refund_amount: Mapped[int | None]
    dispute_id: Mapped[str | None] = mapped_column(String(255))
    stripe_updated: Mapped[int] = mapped_column(default=0)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The charge as the queue needs it, kept by the database's triggers (migration 0011), never
    # written here: its amount_refunded (0 without a charge) and whether a dispute names it.
    charge_amount_refunded: Mapped[int] = mapped_column(default=0, server_default="0")
    charge_disputed: Mapped[bool] = mapped_column(default=False, server_default=false())


class RadarBlock(Base):
    """A value the console put on a Radar value list for an early fraud warning, and its undo.

    One row per (warning, item type): `status` adding -> active -> removing -> removed, and a
    removed row can be claimed again (`attempt` + 1, so the next value-list item gets a new
    idempotency key). The row is the claim that makes two concurrent clicks add one item.
    """

    __tablename__ = "radar_blocks"
    __table_args__ = (UniqueConstraint("efw_id", "item_type"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    efw_id: Mapped[str] = mapped_column(String(255), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(255))
    item_type: Mapped[str] = mapped_column(String(32))  # card_fingerprint | email
    value: Mapped[str] = mapped_column(Text)
    value_list_alias: Mapped[str] = mapped_column(String(255))
    value_list_id: Mapped[str | None] = mapped_column(String(255))
    item_id: Mapped[str | None] = mapped_column(String(255), index=True)  # rsli_...
    # False when the value was already on the list (added in the Dashboard or by another warning's block):
    # undoing this block then leaves the item alone.
    created_item: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default="adding", index=True)
    attempt: Mapped[int] = mapped_column(default=1)
    actor: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_by: Mapped[str | None] = mapped_column(String(320))
    removed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
