"""The hourly rollup behind the First-24h board (metric_hourly, migration 0008), on SQLite and
PostgreSQL: whatever writes metric points keeps it equal to the raw aggregate of metric_points
(points a dedupe_key already counted add nothing; test-tagged points stay apart), the board read
from it equals the board summed from the points for 24 h and 7 d windows, aligned or not, and the
migration rolls up the points that were already there."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from db.models import MetricPoint
from db.session import UnitOfWork
from services import metric_points as m
from services import metric_rollup, metrics, webhooks
from webhooks.rejections import RejectionCounter

BASE = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def _event(event_id: str, event_type: str = "invoice.paid", **obj: Any) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()), "livemode": False,
            "data": {"object": {"id": f"in_{event_id}", "object": "invoice", **obj}}}


def _record_everything(runtime: Any) -> None:
    with runtime.uow() as uow:
        for i in range(60):
            at = BASE + timedelta(minutes=97 * i)  # spread over ~4 days, several points an hour
            assert m.record_metric(uow, m.INVOICE_PAID, at=at, dedupe_key=f"evt_{i}:paid")
            assert not m.record_metric(uow, m.INVOICE_PAID, at=at, dedupe_key=f"evt_{i}:paid")  # counted once
            m.record_metric(uow, m.INVOICE_FAILED, at=at, value=3, tags={"plan": "pro"})
            m.record_metric(uow, m.INVOICE_FAILED, at=at, tags={m.TEST_TAG: True})
        rows = [m.metric_row(m.SUBSCRIPTION_CHANGE, at=BASE + timedelta(minutes=13 * i), value=i % 4 + 1,
                             tags={m.TEST_TAG: True} if i % 5 == 0 else {"plan": "basic"},
                             dedupe_key=f"chg_{i % 150}") for i in range(200)]  # 50 repeat a key in the batch
        m.record_metrics(uow, rows)
        m.record_metrics(uow, rows[:40])  # all already counted
        uow.commit()
    with m.test_activity():
        with runtime.uow() as uow:
            m.record_metrics(uow, [m.metric_row(m.DUNNING_ENTERED, at=BASE + timedelta(hours=30))])
            uow.commit()
    # The receiver's path: stored, duplicate, ignored and test-clock deliveries.
    events = [_event(f"evt_rx_{i}") for i in range(20)] + [_event("evt_rx_3"), _event("evt_rx_prod", "product.created"),
                                                            _event("evt_rx_clock", test_clock="clock_1")]
    webhooks.store_events(runtime, events)
    webhooks.store_events(runtime, events[:5])
    counter = RejectionCounter(runtime)
    counter.add(m.WEBHOOK_INVALID_SIGNATURE, "no signature matches")
    counter.add(m.WEBHOOK_INVALID_SIGNATURE, "no signature matches")
    counter.flush()


def test_the_rollup_equals_the_raw_aggregate(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    _record_everything(runtime)
    with runtime.uow() as uow:
        raw = metric_rollup.raw_aggregate(uow)
        rolled = metric_rollup.rollup(uow)
    assert rolled == raw
    assert any(test for (_h, _n, test) in raw) and any(not test for (_h, _n, test) in raw)
    assert raw[(BASE, m.INVOICE_PAID, False)] == 1  # one point at 06:00; its replay did not count
    received = sum(v for (_h, n, t), v in raw.items() if n == m.WEBHOOK_RECEIVED)
    assert received == 23 + 5  # every verified delivery, copies included


def test_the_board_from_the_rollup_equals_the_board_from_the_points(runtime_factory: Any,
                                                                     database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    _record_everything(runtime)
    now = datetime.now(UTC)
    windows = [(BASE, BASE + timedelta(hours=24)), (BASE, BASE + timedelta(days=7)),
               (BASE + timedelta(minutes=17), BASE + timedelta(hours=24, minutes=17)),  # partial end hours
               (BASE + timedelta(minutes=50, seconds=30), BASE + timedelta(days=3, minutes=5)),
               (BASE + timedelta(minutes=5), BASE + timedelta(minutes=40)),  # inside one hour
               (now - timedelta(hours=24), now)]  # the receiver's points, this hour
    for start, end in windows:
        for test in (False, True):
            rolled = metrics.board(UnitOfWork(runtime.engine), start=start, end=end, test=test)
            raw = metrics.board(UnitOfWork(runtime.engine), start=start, end=end, test=test, from_points=True)
            assert rolled.totals == raw.totals, (start, end, test)
            assert rolled.series == raw.series, (start, end, test)
    full = metrics.board(UnitOfWork(runtime.engine), start=BASE, end=BASE + timedelta(days=7))
    assert full.totals[m.INVOICE_FAILED] == 180 and full.totals[m.INVOICE_PAID] == 60


def test_rebuild_and_the_migration_roll_up_points_written_around_it(database_url: str) -> None:
    from db.migrate import upgrade
    from db.session import get_engine

    upgrade(database_url, "0003")  # before the rollup existed
    engine = get_engine(database_url)
    rows = [{"name": m.INVOICE_PAID if i % 2 else m.WEBHOOK_RECEIVED, "at": BASE + timedelta(minutes=29 * i),
             "value": 2, "tags": {m.TEST_TAG: True} if i % 7 == 0 else {}, "dedupe_key": None} for i in range(300)]
    with engine.begin() as conn:
        conn.execute(insert(MetricPoint), rows)
    upgrade(database_url, "0008")
    with UnitOfWork(engine) as uow:
        assert metric_rollup.rollup(uow) == metric_rollup.raw_aggregate(uow) != {}
        # A bulk load that bypassed record_metrics, then rebuild.
        uow.session.execute(insert(MetricPoint), rows[:50])
        metric_rollup.rebuild(uow)
        uow.commit()
    with UnitOfWork(engine) as uow:
        assert metric_rollup.rollup(uow) == metric_rollup.raw_aggregate(uow)
        assert sum(v for (_h, n, _t), v in metric_rollup.rollup(uow).items() if n == m.INVOICE_PAID) == 2 * (150 + 25)
