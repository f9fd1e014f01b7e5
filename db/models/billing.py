"""Customers, plans, subscriptions, invoices, charges and refunds mirrored from Stripe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # cus_...
    # Customer-controlled text from Stripe (no length we could rely on): Text, so no value fails a batch.
    email: Mapped[str | None] = mapped_column(Text, index=True)
    name: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text, index=True)  # metadata.user_id (Stripe: <= 500 chars)
    metadata_ip: Mapped[str | None] = mapped_column(String(64), index=True)  # metadata.ip: the app's purchase IP
    created: Mapped[datetime | None]
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stripe_updated: Mapped[int] = mapped_column(default=0)  # event.created of the state we hold
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UserSubscription(Base):
    """The billing DB's view of one Stripe subscription."""

    __tablename__ = "user_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str | None] = mapped_column(Text, index=True)  # metadata.user_id
    status: Mapped[str] = mapped_column(String(32), index=True)
    is_active: Mapped[bool] = mapped_column(default=False)
    plan: Mapped[str | None] = mapped_column(String(64), index=True)
    interval: Mapped[str | None] = mapped_column(String(16))
    stripe_price_id: Mapped[str | None] = mapped_column(String(255))
    stripe_item_id: Mapped[str | None] = mapped_column(String(255))
    # Basil: the period lives on the subscription item.
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None] = mapped_column(index=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    pending_plan: Mapped[str | None] = mapped_column(Text)  # metadata.pending_plan
    canceled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    latest_invoice_id: Mapped[str | None] = mapped_column(String(255))
    # event.created (or API read time) of the Stripe state we hold; older events never overwrite.
    stripe_updated: Mapped[int] = mapped_column(default=0)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PlanChange(Base):
    """Plan history: each observed or requested plan change of a subscription."""

    __tablename__ = "plan_changes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), index=True)
    from_plan: Mapped[str | None] = mapped_column(String(64))
    to_plan: Mapped[str | None] = mapped_column(String(64))
    # upgrade | downgrade_scheduled | downgrade_applied | downgrade_canceled | cancel | resume | observed
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(255))
    source_event_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Invoice(Base):
    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # in_...
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # Basil: invoice.parent.subscription_details.subscription
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str | None] = mapped_column(String(32), index=True)
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    amount_due: Mapped[int] = mapped_column(default=0)
    amount_paid: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    attempt_count: Mapped[int] = mapped_column(default=0)
    plan: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[datetime | None] = mapped_column(index=True)
    paid_at: Mapped[datetime | None]
    # Dunning and SCA: when it entered, when and how it recovered.
    payment_failed_at: Mapped[datetime | None] = mapped_column(index=True)
    action_required_at: Mapped[datetime | None] = mapped_column(index=True)
    recovered_at: Mapped[datetime | None]
    recovery_method: Mapped[str | None] = mapped_column(String(32))  # retry | customer_action | card_update
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    hosted_invoice_url: Mapped[str | None] = mapped_column(Text)
    stripe_updated: Mapped[int] = mapped_column(default=0)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Charge(Base):
    __tablename__ = "charges"
    # Succeeded charges per day and per card brand (the dispute rates) from the index alone (migration 0010).
    __table_args__ = (Index("ix_charges_status_created_card_brand", "status", "created", "card_brand"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # ch_...
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    invoice_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(default=0)
    amount_refunded: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str | None] = mapped_column(String(32))
    paid: Mapped[bool] = mapped_column(default=False)
    refunded: Mapped[bool] = mapped_column(default=False)
    disputed: Mapped[bool] = mapped_column(default=False)
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_country: Mapped[str | None] = mapped_column(String(2))
    card_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    metadata_ip: Mapped[str | None] = mapped_column(String(64), index=True)  # metadata.ip (Stripe has no charge IP)
    three_d_secure_result: Mapped[str | None] = mapped_column(String(32))
    risk_level: Mapped[str | None] = mapped_column(String(32))
    risk_score: Mapped[int | None]
    created: Mapped[datetime | None] = mapped_column(index=True)
    stripe_updated: Mapped[int] = mapped_column(default=0)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # re_...
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    reason: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))  # pending | requires_action | succeeded | failed | canceled
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str | None] = mapped_column(String(320))  # the console user who sent it, when it was us
    created: Mapped[datetime | None]
    stripe_updated: Mapped[int] = mapped_column(default=0)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
