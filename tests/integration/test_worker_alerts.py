"""The worker sends the First 24 hours alerts (the page only shows them): evaluated at most
once per ALERT_CHECK_SECONDS, each sent to Sentry at most once per hour."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from db.models.base import utcnow
from db.repositories import settings as app_settings
from services import metric_points as m
from services import metrics, worker
from services.config import load_settings
from services.runtime import Runtime


class Stop(Exception):
    """Ends the worker loop from its sleep."""


def _fire(runtime: Runtime, name: str, count: int) -> None:
    with runtime.uow() as uow:
        for _ in range(count):
            m.record_metric(uow, name, at=utcnow() - timedelta(minutes=2))
        uow.commit()


def _run_two_polls(runtime: Runtime, between: Any) -> None:
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            raise Stop
        between()

    with pytest.raises(Stop):
        worker.run_worker(runtime, once=False, echo=lambda _line: None, sleep=sleep)


@pytest.mark.parametrize(("interval", "sent_keys"), [
    (3600.0, ["invalid_signatures"]),  # the second poll is inside the interval: nothing evaluated
    (0.0, ["invalid_signatures", "change_error_rate"]),  # evaluated again: only the new alert is sent
])
def test_worker_sends_alerts_once_per_interval(migrated_url: str, monkeypatch: pytest.MonkeyPatch,
                                               interval: float, sent_keys: list[str]) -> None:
    runtime = Runtime(load_settings({"DATABASE_URL": migrated_url}, env_file=None))
    sent: list[str] = []
    monkeypatch.setattr(metrics, "capture_alert", lambda _message, tags: sent.append(tags["alert"]))
    monkeypatch.setattr(worker, "ALERT_CHECK_SECONDS", interval)
    _fire(runtime, m.WEBHOOK_INVALID_SIGNATURE, 12)  # alert at 10 an hour
    _run_two_polls(runtime, between=lambda: _fire(runtime, m.CHANGE_ERROR, 1))  # 1 of 1 plan changes failed
    assert sent == sent_keys
    with runtime.uow() as uow:
        assert sorted(app_settings.value(uow, metrics.ALERTS_SENT_KEY)) == sorted(sent_keys)


def test_a_full_poll_of_failing_events_goes_on_without_waiting(migrated_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog whose events fail is still a backlog: the worker waits only after a poll that
    claimed less than it asked for (it used to wait after any poll that processed less)."""
    from services import event_handlers, event_processing, webhooks

    runtime = Runtime(load_settings({"DATABASE_URL": migrated_url}, env_file=None))
    monkeypatch.setattr(worker, "POLL_BATCH", 4)
    monkeypatch.setattr(worker, "ALERT_CHECK_SECONDS", 3600.0)

    def breaks(*_args: Any) -> None:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.succeeded", breaks)
    created = int(utcnow().timestamp()) - 60
    webhooks.store_events(runtime, [
        {"id": f"evt_fail_{i}", "object": "event", "type": "charge.succeeded", "created": created + i,
         "livemode": False, "api_version": "2026-10-28.endive",
         "data": {"object": {"id": f"ch_fail_{i}", "object": "charge", "amount": 100, "currency": "usd"}}}
        for i in range(6)])
    polls: list[int] = []
    original_poll = event_processing.poll_pending

    def counted(*args: Any, **kwargs: Any) -> Any:
        poll = original_poll(*args, **kwargs)
        polls.append(poll.claimed)
        return poll

    monkeypatch.setattr(worker, "poll_pending", counted)
    waits: list[int] = []

    def sleep(_seconds: float) -> None:
        waits.append(len(polls))
        raise Stop

    with pytest.raises(Stop):
        worker.run_worker(runtime, once=False, echo=lambda _line: None, sleep=sleep)
    # 4 claimed (all failed): straight on; then 2 claimed, fewer than asked: now it waits.
    assert polls == [4, 2] and waits == [2]
