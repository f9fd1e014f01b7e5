"""The worker's batch path (services/event_batch_rows.py: the batch's rows loaded up front, its
metric points written together), on SQLite and PostgreSQL: a batch of mixed, out-of-order and
failing events leaves the same rows, metric points and rollup as the same events applied one at a
time; newer stored state is never overwritten by an older event; a failing event leaves nothing
behind and stays retryable with its attempts counted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from db.models import (
    Charge,
    Customer,
    Dispute,
    Invoice,
    MetricPoint,
    PlanChange,
    Refund,
    StripeEvent,
    UserSubscription,
)
from db.models.base import utcnow
from services import event_handlers, event_processing, metric_rollup, webhooks

T = int(time.time()) - 3600


def event(event_id: str, kind: str, obj: dict[str, Any], *, created: int,
          previous: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {"id": event_id, "object": "event", "type": kind, "created": created, "livemode": False,
            "api_version": "2026-10-28.endive", "data": data}


def customer(customer_id: str, email: str) -> dict[str, Any]:
    return {"id": customer_id, "object": "customer", "email": email, "name": None, "metadata": {}, "created": T}


def charge(charge_id: str, *, customer_id: str | None = None, amount: int = 1000, **fields: Any) -> dict[str, Any]:
    return {"id": charge_id, "object": "charge", "amount": amount, "amount_refunded": 0, "currency": "usd",
            "status": "succeeded", "paid": True, "refunded": False, "disputed": False, "customer": customer_id,
            "created": T, "refunds": {"object": "list", "data": []}, **fields}


def invoice(invoice_id: str, customer_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"id": invoice_id, "object": "invoice", "customer": customer_id, "status": status, "amount_due": 2000,
            "amount_paid": 2000 if status == "paid" else 0, "currency": "usd", "attempt_count": 1,
            "billing_reason": "subscription_cycle", "created": T, "lines": {"object": "list", "data": []},
            "status_transitions": {"paid_at": None}, **fields}


def subscription(subscription_id: str, customer_id: str, status: str) -> dict[str, Any]:
    return {"id": subscription_id, "object": "subscription", "customer": customer_id, "status": status,
            "items": {"object": "list", "data": []}, "metadata": {}, "cancel_at_period_end": False,
            "created": T, "start_date": T}


CUSTOMERS = {"cus_known": customer("cus_known", "known@example.com"), "cus_new": customer("cus_new", "new@example.com")}


def mixed_events() -> list[dict[str, Any]]:
    """Two customers (one the DB knows, one read from Stripe), a subscription created then updated,
    an invoice that failed then was paid (both paid events), charges in and out of order, a refund
    carried by its charge, and a dispute on a charge that is read from Stripe."""
    return [
        event("evt_sub_created", "customer.subscription.created", subscription("sub_1", "cus_known", "incomplete"),
              created=T + 1),
        event("evt_sub_updated", "customer.subscription.updated", subscription("sub_1", "cus_known", "active"),
              created=T + 5, previous={"status": "incomplete"}),
        event("evt_inv_failed", "invoice.payment_failed", invoice("in_1", "cus_new", "open"), created=T + 10),
        event("evt_inv_paid", "invoice.paid",
              invoice("in_1", "cus_new", "paid", status_transitions={"paid_at": T + 20}), created=T + 20),
        event("evt_inv_succeeded", "invoice.payment_succeeded",
              invoice("in_1", "cus_new", "paid", status_transitions={"paid_at": T + 20}), created=T + 20),
        # Newer state first in the backlog order of ids, older state later: `created` decides.
        event("evt_ch_new", "charge.refunded",
              charge("ch_1", customer_id="cus_known", amount_refunded=400,
                     refunds={"object": "list", "data": [
                         {"id": "re_1", "object": "refund", "charge": "ch_1", "amount": 400, "currency": "usd",
                          "status": "succeeded", "created": T + 30, "reason": None}]}),
              created=T + 30),
        event("evt_ch_old", "charge.succeeded", charge("ch_1", customer_id="cus_known"), created=T + 25),
        event("evt_ch_2", "charge.succeeded", charge("ch_2", customer_id="cus_new", amount=5000), created=T + 26),
        event("evt_dp_1", "charge.dispute.created",
              {"id": "dp_1", "object": "dispute", "charge": "ch_3", "amount": 700, "currency": "usd",
               "reason": "fraudulent", "status": "needs_response", "created": T + 40,
               "evidence_details": {"due_by": T + 86400, "has_evidence": False, "submission_count": 0},
               "is_charge_refundable": True}, created=T + 40),
    ]


def stub_stripe(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []

    def retrieve_customer(customer_id: str, **_: Any) -> dict[str, Any]:
        reads.append(customer_id)
        return CUSTOMERS[customer_id]

    def retrieve_charge(charge_id: str, **_: Any) -> dict[str, Any]:
        reads.append(charge_id)
        return charge(charge_id, customer_id="cus_new", amount=700, disputed=True)

    monkeypatch.setattr(runtime.gateway, "retrieve_customer", retrieve_customer)
    monkeypatch.setattr(runtime.gateway, "retrieve_charge", retrieve_charge)
    return reads


def seed_known_customer(runtime: Any) -> None:
    from services import stripe_mapping

    with runtime.uow() as uow:
        stripe_mapping.upsert_customer(uow, CUSTOMERS["cus_known"], observed_at=T)
        uow.commit()


_TABLES = (Customer, UserSubscription, PlanChange, Invoice, Charge, Refund, Dispute)
_SKIP = {"updated_at", "stripe_updated", "id"}
_APPLIED = MetricPoint.name.not_like("stripe.webhook.%")  # the worker's points, not the receiver's


def snapshot(runtime: Any) -> dict[str, Any]:
    """Every billing row (by its Stripe id, without the times that depend on when it was read), the
    metric points and the rollup."""
    with runtime.uow() as uow:
        rows: dict[str, Any] = {}
        for model in _TABLES:
            for row in uow.session.execute(select(model)).scalars():
                key = getattr(row, "stripe_subscription_id", None) or str(row.id)
                values = {c.key: getattr(row, c.key) for c in model.__table__.columns if c.key not in _SKIP}
                if model is Customer or model is Charge and row.id == "ch_3":  # read from Stripe: read time
                    values.pop("raw", None)
                rows[f"{model.__tablename__}:{key}"] = values
        points = sorted((p.name, p.at, p.value, str(sorted(p.tags.items())), p.dedupe_key)
                        for p in uow.session.execute(select(MetricPoint).where(_APPLIED)).scalars())
        rolled = metric_rollup.rollup(uow)
        assert rolled == metric_rollup.raw_aggregate(uow)
    return {"rows": rows, "points": points, "rollup": rolled}


def reset(runtime: Any) -> None:
    """Back to the known customer alone and every event pending."""
    with runtime.uow() as uow:
        for model in _TABLES:
            uow.session.execute(delete(model))
        uow.session.execute(delete(MetricPoint).where(_APPLIED))
        metric_rollup.rebuild(uow)
        uow.session.execute(update(StripeEvent).values(status="pending", attempts=0, next_attempt_at=None,
                                                       processed_at=None, last_error=None))
        uow.commit()
    seed_known_customer(runtime)


def stored_mixed_batch(runtime_factory: Any, database_url: str,
                       monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[dict[str, Any]]]:
    """A runtime on `database_url` with Stripe stubbed, the known customer seeded and
    `mixed_events()` stored, not processed yet."""
    runtime = runtime_factory(DATABASE_URL=database_url)
    stub_stripe(runtime, monkeypatch)
    seed_known_customer(runtime)
    events = mixed_events()
    webhooks.store_events(runtime, events)
    return runtime, events


def test_a_mixed_batch_leaves_what_the_events_one_at_a_time_leave(runtime_factory: Any, database_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, events = stored_mixed_batch(runtime_factory, database_url, monkeypatch)
    applied: list[str] = []
    for kind, handler in list(event_handlers.HANDLERS.items()):
        def counting(uow: Any, payload: Any, rt: Any, refetch: bool, handler: Any = handler) -> None:
            applied.append(payload["id"])
            handler(uow, payload, rt, refetch)

        monkeypatch.setitem(event_handlers.HANDLERS, kind, counting)
    assert webhooks.process_pending(runtime) == len(events)
    assert sorted(applied) == sorted(e["id"] for e in events)  # one transaction: nothing applied again alone
    batched = snapshot(runtime)

    rows = batched["rows"]
    assert rows["user_subscriptions:sub_1"]["status"] == "active"
    assert rows["invoices:in_1"]["status"] == "paid"
    assert rows["invoices:in_1"]["payment_failed_at"] is not None
    assert rows["invoices:in_1"]["recovered_at"] is not None
    assert rows["charges:ch_1"]["amount_refunded"] == 400  # the older event came later and lost
    assert rows["refunds:re_1"]["amount"] == 400
    assert rows["charges:ch_3"]["disputed"]
    assert rows["disputes:dp_1"]["customer_email"] == "new@example.com"
    assert rows["customers:cus_new"]["email"] == "new@example.com"
    names = [p[0] for p in batched["points"]]
    assert sorted(names) == sorted(["invoice.failed", "stripe.dunning.entered", "invoice.paid",
                                    "stripe.dunning.recovered"])  # invoice.paid once for both paid events

    reset(runtime)
    one_at_a_time = 0
    while webhooks.process_pending(runtime, limit=1):
        one_at_a_time += 1
    assert one_at_a_time == len(events)
    assert snapshot(runtime) == batched


def test_an_older_event_never_overwrites_newer_stored_state(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    webhooks.store_events(runtime, [event("evt_new", "charge.refunded", charge("ch_9", amount_refunded=900),
                                          created=T + 100)])
    assert webhooks.process_pending(runtime) == 1
    # A batch that loads ch_9 up front, with the late older event among others.
    webhooks.store_events(runtime, [
        event("evt_late", "charge.succeeded", charge("ch_9", amount_refunded=0), created=T + 50),
        *[event(f"evt_other_{n}", "charge.succeeded", charge(f"ch_other_{n}"), created=T + 60 + n) for n in range(5)],
    ])
    assert webhooks.process_pending(runtime) == 6
    with runtime.uow() as uow:
        row = uow.session.get(Charge, "ch_9")
        assert row is not None and row.amount_refunded == 900 and row.stripe_updated == T + 100
        assert len(uow.session.execute(select(Charge.id)).all()) == 6


def test_a_failing_event_in_a_batch_leaves_nothing_and_stays_retryable(runtime_factory: Any, database_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, events = stored_mixed_batch(runtime_factory, database_url, monkeypatch)
    original = event_handlers.HANDLERS["invoice.paid"]

    def breaks(uow: Any, payload: Any, rt: Any, refetch: bool) -> None:
        original(uow, payload, rt, refetch)  # its rows and points must go with it
        raise RuntimeError("handler bug")

    monkeypatch.setitem(event_handlers.HANDLERS, "invoice.paid", breaks)
    assert webhooks.process_pending(runtime) == len(events) - 1
    with runtime.uow() as uow:
        state = {r.id: (r.status, r.attempts) for r in uow.session.execute(select(StripeEvent)).scalars()}
        assert state.pop("evt_inv_paid") == ("failed", 1)
        assert set(state.values()) == {("processed", 1)}
        # invoice.payment_succeeded still counted the invoice paid once; the failed event added nothing.
        names = sorted(p.name for p in uow.session.execute(select(MetricPoint).where(_APPLIED)).scalars())
        assert names == sorted(["invoice.failed", "stripe.dunning.entered", "invoice.paid",
                                "stripe.dunning.recovered"])
        assert metric_rollup.rollup(uow) == metric_rollup.raw_aggregate(uow)
    monkeypatch.setitem(event_handlers.HANDLERS, "invoice.paid", original)
    later = utcnow() + event_processing._backoff(1) * 2
    assert webhooks.process_pending(runtime, now=later) == 1
    with runtime.uow() as uow:
        row = uow.session.get(StripeEvent, "evt_inv_paid")
        assert row is not None and (row.status, row.attempts) == ("processed", 2)
        # The replay counted nothing twice.
        assert len(uow.session.execute(select(MetricPoint.id).where(_APPLIED)).all()) == 4


def test_a_row_another_worker_changes_during_the_batch_is_not_overwritten(
        runtime_factory: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL (SQLite's writers are serial): the batch loaded ch_c before another transaction
    committed a newer state; the batch notices before it writes and applies its events one at a
    time, where the older event loses as it always did."""
    runtime = runtime_factory(DATABASE_URL=postgres_url)
    webhooks.store_events(runtime, [event("evt_c0", "charge.succeeded", charge("ch_c"), created=T + 10)])
    assert webhooks.process_pending(runtime) == 1
    webhooks.store_events(runtime, [
        event("evt_c1", "charge.updated", charge("ch_c", amount_refunded=100), created=T + 20),
        event("evt_d1", "charge.succeeded", charge("ch_d"), created=T + 21),
    ])
    original = event_handlers.HANDLERS["charge.succeeded"]
    meddled: list[str] = []

    def meddling(uow: Any, payload: Any, rt: Any, refetch: bool) -> None:
        if not meddled:  # another worker commits a newer ch_c while this batch runs
            meddled.append(payload["id"])
            with rt.uow() as other:
                other.session.execute(update(Charge).where(Charge.id == "ch_c")
                                      .values(amount_refunded=999, stripe_updated=T + 30))
                other.commit()
        original(uow, payload, rt, refetch)

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.succeeded", meddling)
    monkeypatch.setitem(event_handlers.HANDLERS, "charge.updated", meddling)
    assert webhooks.process_pending(runtime) == 2
    assert meddled == ["evt_c1"]
    with runtime.uow() as uow:
        row = uow.session.get(Charge, "ch_c")
        assert row is not None and (row.amount_refunded, row.stripe_updated) == (999, T + 30)
        assert uow.session.get(Charge, "ch_d") is not None
        assert {r.status for r in uow.session.execute(select(StripeEvent)).scalars()} == {"processed"}
