"""What `store_events` leaves behind, on SQLite (its multi-row statements: INSERT, an UPDATE per
duplicate, the metric points) and on PostgreSQL (all of it in one statement): the same outcomes,
the same rows with the same duplicate counts, the same metric points and rollup. The expected
values below are what the separate statements stored before PostgreSQL's were folded into one.
On PostgreSQL also: a copy whose first delivery is committed by another connection while this
statement waits for it still counts as a duplicate on the row."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, text

from db.models import MetricPoint, StripeEvent
from db.session import UnitOfWork
from services import metric_points, metric_rollup
from services.webhooks import ingest_event, store_events


def _event(event_id: str, event_type: str = "invoice.paid", **obj: Any) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "created": 1_780_000_000, "livemode": False,
            "data": {"object": {"id": f"in_{event_id}", "object": "invoice", **obj}}}


def _rows(runtime: Any) -> dict[str, tuple[str, int, str]]:
    with runtime.uow() as uow:
        found = uow.session.execute(select(StripeEvent.id, StripeEvent.status, StripeEvent.duplicate_deliveries,
                                           StripeEvent.source))
        return {event_id: (status, duplicates, source) for event_id, status, duplicates, source in found}


def _points(runtime: Any) -> list[tuple[str, int, str | None, tuple[tuple[str, Any], ...]]]:
    with runtime.uow() as uow:
        found = uow.session.execute(select(MetricPoint.name, MetricPoint.value, MetricPoint.dedupe_key,
                                           MetricPoint.tags))
        return sorted(((name, value, key, tuple(sorted(tags.items()))) for name, value, key, tags in found), key=repr)


def _received(outcome: str, key: str | None = None, **extra: Any) -> tuple[str, int, str | None, Any]:
    tags = {"type": "invoice.paid" if outcome != "ignored" else "product.created", "outcome": outcome, **extra}
    return (metric_points.WEBHOOK_RECEIVED, 1, key, tuple(sorted(tags.items())))


def test_batches_with_copies_redeliveries_ignored_and_test_events(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    first = store_events(runtime, [_event("evt_a"), _event("evt_b"), _event("evt_a"),
                                   _event("evt_c", "product.created"), _event("evt_t", test_clock="clock_1")])
    assert first == ["stored", "stored", "duplicate", "ignored", "stored"]
    second = store_events(runtime, [_event("evt_b"), _event("evt_d"), _event("evt_d"),
                                    _event("evt_c", "product.created"), _event("evt_a")])
    assert second == ["duplicate", "stored", "duplicate", "duplicate", "duplicate"]
    with metric_points.test_activity():  # a QA-matrix case delivering: its points are test activity
        assert store_events(runtime, [_event("evt_q"), _event("evt_q")]) == ["stored", "duplicate"]
    assert ingest_event(runtime, _event("evt_s"), source="sync", process=False) == "stored"
    assert ingest_event(runtime, _event("evt_s"), source="sync", process=False) == "duplicate"

    assert _rows(runtime) == {
        "evt_a": ("pending", 2, "webhook"), "evt_b": ("pending", 1, "webhook"), "evt_c": ("ignored", 1, "webhook"),
        "evt_t": ("pending", 0, "webhook"), "evt_d": ("pending", 1, "webhook"), "evt_q": ("pending", 1, "webhook"),
        "evt_s": ("pending", 1, "sync"),
    }
    duplicate = metric_points.WEBHOOK_DUPLICATE
    expected = [
        _received("new", "evt_a:received"), _received("new", "evt_b:received"), _received("duplicate"),
        (duplicate, 1, None, (("event", "evt_a"),)),
        _received("ignored", "evt_c:received"),
        (metric_points.WEBHOOK_IGNORED, 1, "evt_c:ignored", (("type", "product.created"),)),
        _received("new", "evt_t:received", test=True),
        # second batch: b, d's copy, c and a are duplicates
        _received("duplicate"), (duplicate, 1, None, (("event", "evt_b"),)),
        _received("new", "evt_d:received"), _received("duplicate"), (duplicate, 1, None, (("event", "evt_d"),)),
        (metric_points.WEBHOOK_RECEIVED, 1, None, (("outcome", "duplicate"), ("type", "product.created"))),
        (duplicate, 1, None, (("event", "evt_c"),)),
        _received("duplicate"), (duplicate, 1, None, (("event", "evt_a"),)),
        # under test_activity
        _received("new", "evt_q:received", test=True), _received("duplicate", test=True),
        (duplicate, 1, None, (("event", "evt_q"), ("test", True))),
        # sync: one backfilled point, nothing for the copy it found again
        (metric_points.EVENTS_BACKFILLED, 1, "evt_s:backfilled", (("source", "sync"), ("type", "invoice.paid"))),
    ]
    assert _points(runtime) == sorted(expected, key=repr)
    with runtime.uow() as uow:
        assert metric_rollup.rollup(uow) == metric_rollup.raw_aggregate(uow)
        totals: dict[tuple[str, bool], int] = {}
        for (_hour, name, test), value in metric_rollup.rollup(uow).items():
            totals[(name, test)] = totals.get((name, test), 0) + value
    assert totals == {(metric_points.WEBHOOK_RECEIVED, False): 9, (metric_points.WEBHOOK_RECEIVED, True): 3,
                      (duplicate, False): 5, (duplicate, True): 1, (metric_points.WEBHOOK_IGNORED, False): 1,
                      (metric_points.EVENTS_BACKFILLED, False): 1}


class _HeldCommit(UnitOfWork):
    """A unit of work whose commit waits until `release` is set (its rows inserted, not committed)."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.reached = threading.Event()
        self.release = threading.Event()

    def commit(self) -> None:
        self.reached.set()
        assert self.release.wait(20)
        super().commit()


@pytest.mark.postgres
def test_a_copy_racing_another_connections_commit_counts_as_a_duplicate(runtime_factory: Any,
                                                                         postgres_url: str) -> None:
    """The statement's snapshot predates the other commit, so an UPDATE inside the statement would
    not see the row; ON CONFLICT DO UPDATE waits for it and adds the copy."""
    runtime = runtime_factory(DATABASE_URL=postgres_url)
    held = _HeldCommit(runtime.engine)
    outcomes: dict[str, list[str]] = {}
    first = threading.Thread(target=lambda: outcomes.setdefault("first", store_events(runtime, [_event("evt_r")],
                                                                                      uow=held)))
    first.start()
    assert held.reached.wait(20)  # evt_r is inserted in an open transaction
    with runtime.engine.connect() as autocommit:
        copy = UnitOfWork(autocommit.execution_options(isolation_level="AUTOCOMMIT"))
        second = threading.Thread(target=lambda: outcomes.setdefault("second", store_events(runtime, [_event("evt_r")],
                                                                                            uow=copy)))
        second.start()
        _wait_for_lock_wait(runtime)  # the copy's statement has started and waits for the first's row
        held.release.set()
        first.join(20)
        second.join(20)
    assert outcomes == {"first": ["stored"], "second": ["duplicate"]}
    assert _rows(runtime) == {"evt_r": ("pending", 1, "webhook")}
    assert _points(runtime) == sorted([_received("new", "evt_r:received"), _received("duplicate"),
                                       (metric_points.WEBHOOK_DUPLICATE, 1, None, (("event", "evt_r"),))], key=repr)
    with runtime.uow() as uow:
        assert metric_rollup.rollup(uow) == metric_rollup.raw_aggregate(uow)


def _wait_for_lock_wait(runtime: Any) -> None:
    """Until some backend of this database waits on a lock (polls pg_stat_activity)."""
    query = text("SELECT count(*) FROM pg_stat_activity"
                 " WHERE datname = current_database() AND wait_event_type = 'Lock'")
    for _ in range(400):
        with runtime.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        time.sleep(0.05)
    raise AssertionError("the second delivery never waited for the first one's row")
