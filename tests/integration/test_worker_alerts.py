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
