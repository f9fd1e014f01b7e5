"""The object -> model mapping on both databases: basil shapes, ordering, decisions kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import Dispute, FraudWarning, Invoice, PlanChange, UserSubscription
from db.session import UnitOfWork
from services import stripe_mapping
from services.config import load_settings

SETTINGS = load_settings(
    {
        "STRIPE_PRICE_BASIC_MONTHLY": "price_basic_m",
        "STRIPE_PRICE_PRO_MONTHLY": "price_pro_m",
    },
    env_file=None,
)


def _subscription(price: str, *, period_end: int, cancel: bool = False, pending: str | None = None) -> dict[str, Any]:
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": "active",
        "cancel_at_period_end": cancel,
        "metadata": {"pending_plan": pending} if pending else {},
        "items": {
            "data": [
                {
                    "id": "si_1",
                    "price": {"id": price},
                    "current_period_start": period_end - 2_592_000,
                    "current_period_end": period_end,
                }
            ]
        },
        "start_date": 1_700_000_000,
    }


def test_subscription_reads_basil_period_and_plan(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        stripe_mapping.upsert_subscription(
            uow, _subscription("price_pro_m", period_end=1_800_000_000, cancel=True, pending="basic"),
            observed_at=100, settings=SETTINGS,
        )
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.execute(select(UserSubscription)).scalar_one()
        assert (row.plan, row.interval) == ("pro", "monthly")
        assert row.current_period_end is not None and int(row.current_period_end.timestamp()) == 1_800_000_000
        assert row.cancel_at_period_end is True and row.pending_plan == "basic"
        assert row.is_active is True


def test_older_event_never_overwrites_newer_state(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        stripe_mapping.upsert_subscription(
            uow, _subscription("price_basic_m", period_end=1_800_000_000), observed_at=200, settings=SETTINGS,
            source_event_id="evt_new",
        )
        stripe_mapping.upsert_subscription(
            uow, _subscription("price_pro_m", period_end=1_700_000_000), observed_at=100, settings=SETTINGS,
            source_event_id="evt_old",
        )
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.execute(select(UserSubscription)).scalar_one()
        assert row.plan == "basic" and row.stripe_updated == 200
        assert uow.session.execute(select(PlanChange)).scalars().all() == []


def test_plan_change_is_recorded_once_per_event(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        stripe_mapping.upsert_subscription(
            uow, _subscription("price_pro_m", period_end=1_800_000_000), observed_at=100, settings=SETTINGS
        )
        for _ in range(2):  # a replayed event
            stripe_mapping.upsert_subscription(
                uow, _subscription("price_basic_m", period_end=1_800_000_000), observed_at=200,
                settings=SETTINGS, source_event_id="evt_2",
            )
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        changes = uow.session.execute(select(PlanChange)).scalars().all()
        assert [(c.from_plan, c.to_plan, c.source_event_id) for c in changes] == [("pro", "basic", "evt_2")]


def test_invoice_subscription_from_parent_details(migrated_url: str) -> None:
    invoice = {
        "id": "in_1",
        "customer": "cus_1",
        "status": "open",
        "amount_due": 1900,
        "amount_paid": 0,
        "currency": "usd",
        "attempt_count": 1,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_9"}},
        "lines": {"data": [{"pricing": {"price_details": {"price": "price_basic_m"}}}]},
        "created": 1_700_000_000,
    }
    with UnitOfWork(migrated_url) as uow:
        stripe_mapping.upsert_invoice(uow, invoice, observed_at=1, settings=SETTINGS)
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.get(Invoice, "in_1")
        assert row is not None
        assert (row.stripe_subscription_id, row.plan, row.amount_due) == ("sub_9", "basic", 1900)


def test_efw_update_keeps_the_ops_decision(migrated_url: str) -> None:
    efw = {"id": "issfr_1", "charge": {"id": "ch_1", "amount": 5000, "currency": "usd", "customer": "cus_1"},
           "fraud_type": "made_with_stolen_card", "actionable": True, "created": 1_700_000_000}
    with UnitOfWork(migrated_url) as uow:
        row = stripe_mapping.upsert_fraud_warning(uow, efw, observed_at=100)
        row.status, row.action, row.actor, row.reason = "ignored", "ignore", "ops@example.com", "known customer"
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        stripe_mapping.upsert_fraud_warning(uow, {**efw, "actionable": False}, observed_at=200)
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        kept = uow.session.get(FraudWarning, "issfr_1")
        assert kept is not None
        assert (kept.status, kept.actor, kept.actionable, kept.amount) == ("ignored", "ops@example.com", False, 5000)


def test_dispute_due_by_and_closed(migrated_url: str) -> None:
    dispute = {"id": "dp_1", "charge": "ch_1", "amount": 2500, "currency": "usd", "reason": "fraudulent",
               "status": "needs_response", "evidence_details": {"due_by": 1_800_000_000, "has_evidence": False,
                                                                "submission_count": 0}, "created": 1_700_000_000}
    with UnitOfWork(migrated_url) as uow:
        stripe_mapping.upsert_dispute(uow, dispute, observed_at=100)
        stripe_mapping.upsert_dispute(uow, {**dispute, "status": "lost"}, observed_at=300)
        stripe_mapping.upsert_dispute(uow, {**dispute, "status": "under_review"}, observed_at=200)
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.get(Dispute, "dp_1")
        assert row is not None
        assert row.status == "lost" and row.closed_at is not None
        assert row.due_by is not None and int(row.due_by.timestamp()) == 1_800_000_000
