"""`billing-ops sync` against the emulator, on SQLite and PostgreSQL: pipelined pages stored once,
a sync stopped part-way resumes with the windows it had not stored, a finished one starts fresh."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import AppSetting, StripeEvent
from services import event_backfill
from services.sync import EVENTS_RETENTION_DAYS, run_sync
from tests.conftest import EmulatorHandle


class Stop(Exception):
    """Stands in for Stripe becoming unreachable (or Ctrl-C) part-way through a sync."""


def _seeded(emulator: EmulatorHandle, runtime_factory: Any, database_url: str) -> tuple[Any, set[str]]:
    seeded = emulator.admin("seed", {"customers": 40, "seed": 7})
    runtime = runtime_factory(DATABASE_URL=database_url, STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]))
    since = int(time.time()) - EVENTS_RETENTION_DAYS * 86400
    expected = {e["id"] for e in runtime.gateway.list_events(created={"gte": since})}
    return runtime, expected


def _stored(runtime: Any) -> tuple[int, int, dict[str, int]]:
    with runtime.uow() as uow:
        total, distinct = uow.session.execute(
            select(func.count(), func.count(func.distinct(StripeEvent.id)))).one()
        statuses = dict(uow.session.execute(
            select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all())
    return int(total), int(distinct), {str(k): int(v) for k, v in statuses.items()}


def test_a_stopped_sync_resumes_without_fetching_a_stored_page_again(
        emulator: EmulatorHandle, runtime_factory: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, expected = _seeded(emulator, runtime_factory, database_url)
    assert len(expected) > 500  # several pages, so several windows
    original = runtime.gateway.list_events_page
    calls: list[dict[str, Any]] = []

    def stops_after_five_pages(params: dict[str, Any]) -> Any:
        calls.append(params)
        if len(calls) > 5:
            raise Stop("connection lost")
        return original(params)

    monkeypatch.setattr(runtime.gateway, "list_events_page", stops_after_five_pages)
    with pytest.raises(Stop):
        run_sync(runtime, since=None, days=None)
    with runtime.uow() as uow:
        saved = uow.session.get(AppSetting, event_backfill.PROGRESS_KEY)
        assert saved is not None
        progress = dict(saved.value)
    first_total, _, _ = _stored(runtime)
    assert 0 < first_total == progress["stored"] + progress["ignored"] < len(expected)
    assert progress["windows"]  # what is left to fetch

    resumed: list[dict[str, Any]] = []

    def recorded(params: dict[str, Any]) -> Any:
        resumed.append(params)
        return original(params)

    monkeypatch.setattr(runtime.gateway, "list_events_page", recorded)
    lines: list[str] = []
    summary = run_sync(runtime, since=None, days=None, progress=lines.append)
    assert any(line.startswith("Resuming the sync") for line in lines)
    # Every page the first run stored is never asked for again: nothing comes back as a duplicate,
    # and the fresh run's first request (the whole range, no cursor, no upper bound) is not repeated.
    assert summary["events"]["duplicate"] == 0
    assert all("starting_after" in p or "lt" in p["created"] for p in resumed)
    total, distinct, statuses = _stored(runtime)
    assert total == distinct == len(expected)
    with runtime.uow() as uow:
        ids = set(uow.session.execute(select(StripeEvent.id)).scalars())
        assert uow.session.get(AppSetting, event_backfill.PROGRESS_KEY) is None  # finished: nothing to resume
    assert ids == expected
    assert set(statuses) <= {"processed", "ignored"}  # the backlog was drained too

    # A finished sync starts fresh: every event is read again and found already stored.
    again = run_sync(runtime, since=None, days=None)
    assert again["events"]["stored"] == again["events"]["ignored"] == 0
    assert again["events"]["duplicate"] == len(expected)
    assert _stored(runtime)[0] == len(expected)


def test_pipelined_pages_store_each_event_once_in_few_requests(
        emulator: EmulatorHandle, runtime_factory: Any, database_url: str) -> None:
    runtime, expected = _seeded(emulator, runtime_factory, database_url)
    summary = run_sync(runtime, since=None, days=None)
    pages = summary["events"]["pages"]
    assert summary["events"]["stored"] + summary["events"]["ignored"] == len(expected)
    assert pages >= len(expected) / 100
    # Splitting windows costs at most a short page per split: close to one request per 100 events.
    assert pages <= len(expected) // 100 + 2 * event_backfill.FETCH_THREADS + 2
    total, distinct, _ = _stored(runtime)
    assert total == distinct == len(expected)


def test_a_changed_option_or_fresh_starts_over(emulator: EmulatorHandle, runtime_factory: Any,
                                               database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, expected = _seeded(emulator, runtime_factory, database_url)
    original = runtime.gateway.list_events_page
    calls = {"n": 0}

    def stops(params: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] > 2:
            raise Stop("stopped")
        return original(params)

    monkeypatch.setattr(runtime.gateway, "list_events_page", stops)
    with pytest.raises(Stop):
        run_sync(runtime, since=None, days=None)
    monkeypatch.setattr(runtime.gateway, "list_events_page", original)
    lines: list[str] = []
    run_sync(runtime, since=None, days=None, fresh=True, progress=lines.append)
    assert not any(line.startswith("Resuming") for line in lines)
    assert _stored(runtime)[0] == len(expected)
