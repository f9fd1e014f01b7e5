"""The worker's batches, on SQLite and PostgreSQL: a batched claim applies each event once with two
workers racing, one bad event fails alone, and Stripe is re-read only where an event's copy can
be stale (two copies of one object in one second that nothing orders)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from db.models import Charge, StripeEvent
from db.models.base import utcnow
from services import event_handlers, event_processing, webhooks


def charge_event(event_id: str, charge_id: str, *, created: int, kind: str = "charge.succeeded",
                 previous: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    charge = {"id": charge_id, "object": "charge", "amount": 1000, "amount_refunded": 0, "currency": "usd",
              "status": "succeeded", "paid": True, "refunded": False, "disputed": False, "customer": None,
              "created": created, "description": None, "refunds": {"object": "list", "data": []}, **fields}
    data: dict[str, Any] = {"object": charge}
    if previous is not None:
        data["previous_attributes"] = previous
    return {"id": event_id, "object": "event", "type": kind, "created": created, "livemode": False,
            "api_version": "2026-10-28.endive", "data": data}


def statuses(runtime: Any) -> dict[str, tuple[str, int]]:
    with runtime.uow() as uow:
        return {r.id: (r.status, r.attempts) for r in uow.session.execute(select(StripeEvent)).scalars()}


def charges(runtime: Any) -> dict[str, Charge]:
    with runtime.uow() as uow:
        return {r.id: r for r in uow.session.execute(select(Charge)).scalars()}


def test_two_workers_racing_over_batches_apply_each_event_once(runtime_factory: Any, database_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    now = int(time.time())
    events = [charge_event(f"evt_race_{n:04d}", f"ch_race_{n:04d}", created=now - 400 + n) for n in range(400)]
    webhooks.store_events(runtime, events)
    applied: list[str] = []
    lock = threading.Lock()
    original = event_handlers.HANDLERS["charge.succeeded"]

    def counting(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        with lock:
            applied.append(event["id"])
        original(uow, event, rt, refetch)

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.succeeded", counting)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            while webhooks.process_pending(runtime, limit=40):
                pass
        except BaseException as error:  # surfaced below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    assert Counter(applied) == Counter(e["id"] for e in events)  # every event applied, none twice
    assert set(statuses(runtime).values()) == {("processed", 1)}
    assert len(charges(runtime)) == 400


def test_a_bad_event_fails_alone_and_stays_retryable(runtime_factory: Any, database_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    now = int(time.time())
    webhooks.store_events(runtime, [charge_event(f"evt_iso_{n}", f"ch_iso_{n}", created=now + n) for n in range(3)])
    original = event_handlers.HANDLERS["charge.succeeded"]

    def breaks_on_the_middle_one(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        original(uow, event, rt, refetch)  # its writes must be rolled back with it
        if event["data"]["object"]["id"] == "ch_iso_1":
            raise RuntimeError("handler bug")

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.succeeded", breaks_on_the_middle_one)
    assert webhooks.process_pending(runtime) == 2
    state = statuses(runtime)
    assert state["evt_iso_0"] == state["evt_iso_2"] == ("processed", 1)
    assert state["evt_iso_1"] == ("failed", 1)
    assert set(charges(runtime)) == {"ch_iso_0", "ch_iso_2"}
    monkeypatch.undo()
    assert webhooks.process_pending(runtime) == 0  # backing off
    later = utcnow() + event_processing._backoff(1) * 2
    assert webhooks.process_pending(runtime, now=later) == 1
    assert statuses(runtime)["evt_iso_1"] == ("processed", 2)
    assert set(charges(runtime)) == {"ch_iso_0", "ch_iso_1", "ch_iso_2"}


def test_stripe_is_re_read_only_where_the_copy_can_be_stale(runtime_factory: Any, database_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    t = int(time.time())
    webhooks.store_events(runtime, [
        # The only event for its charge: its copy is the newest there is.
        charge_event("evt_one", "ch_single", created=t),
        # Older, then newer: `created` orders them, the newer copy wins without asking Stripe.
        charge_event("evt_old", "ch_ordered", created=t - 10),
        charge_event("evt_new", "ch_ordered", created=t, kind="charge.refunded", amount_refunded=300),
        # One second, two different copies, nothing says which came last: re-read once.
        charge_event("evt_tie_a", "ch_tie", created=t),
        charge_event("evt_tie_b", "ch_tie", created=t, kind="charge.refunded", amount_refunded=500),
        # One second, but previous_attributes orders them: the update is the newer, whichever
        # is processed first (its id sorts first here).
        charge_event("evt_z_created", "ch_prev", created=t),
        charge_event("evt_a_updated", "ch_prev", created=t, kind="charge.updated",
                     previous={"description": None}, description="renamed"),
    ])
    reads: list[str] = []

    def retrieve_charge(charge_id: str, **_: Any) -> dict[str, Any]:
        reads.append(charge_id)
        current: dict[str, Any] = charge_event("x", charge_id, created=t, amount_refunded=1000,
                                               refunded=True)["data"]["object"]
        return current

    monkeypatch.setattr(runtime.gateway, "retrieve_charge", retrieve_charge)
    assert webhooks.process_pending(runtime) == 7
    assert reads == ["ch_tie"]
    rows = charges(runtime)
    assert rows["ch_single"].amount == 1000 and rows["ch_single"].amount_refunded == 0
    assert rows["ch_ordered"].amount_refunded == 300
    assert rows["ch_tie"].amount_refunded == 1000 and rows["ch_tie"].refunded
    assert rows["ch_prev"].raw["description"] == "renamed"

    # A late same-second copy arriving after its sibling was applied is re-read too.
    webhooks.store_events(runtime, [charge_event("evt_single_late", "ch_single", created=t, kind="charge.updated",
                                                 description="late")])
    assert webhooks.process_pending(runtime) == 1
    assert reads == ["ch_tie", "ch_single"]
    assert charges(runtime)["ch_single"].refunded  # Stripe's answer, the newest state, won
