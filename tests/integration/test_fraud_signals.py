"""The ALwrity §7-8 fraud signals (issue 19 part 3) on SQLite and PostgreSQL: card testing
(declines, very small charges), dispute volume and EFW frequency each alert at their
threshold and not one below it, count only their window, and show on the First-24h board."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from db.models import Charge, Dispute, FraudWarning
from db.models.base import utcnow
from db.session import UnitOfWork
from services import fraud_signals, metrics
from services.config import load_settings
from tests.apptest.conftest import shell_runtime  # noqa: F401 (the AppTest runtime fixture)

THRESHOLDS = {"ALERT_CARD_DECLINES_PER_HOUR": "4", "ALERT_SMALL_CHARGES_PER_HOUR": "3",
              "ALERT_SMALL_CHARGE_MAX_MINOR": "100", "ALERT_DISPUTES_PER_DAY": "2", "ALERT_EFWS_PER_DAY": "2"}


def _settings(url: str, **extra: str) -> Any:
    return load_settings({"DATABASE_URL": url, **THRESHOLDS, **extra}, env_file=None)


def _add(url: str, rows: list[Any]) -> None:
    with UnitOfWork(url) as uow:
        uow.session.add_all(rows)
        uow.commit()


def _declines(n: int, start: int = 0, minutes_ago: int = 5) -> list[Charge]:
    at = utcnow() - timedelta(minutes=minutes_ago)
    return [Charge(id=f"ch_fail_{start + i}", amount=1500, currency="usd", status="failed", created=at,
                   raw={"failure_code": "card_declined" if i % 2 else "incorrect_cvc"}) for i in range(n)]


def _firing(url: str, settings: Any) -> set[str]:
    return {a.key for a in metrics.active_alerts(UnitOfWork(url), settings=settings)}


def test_declines_alert_at_the_threshold_not_below(migrated_url: str) -> None:
    settings = _settings(migrated_url)
    _add(migrated_url, _declines(3) + _declines(5, start=10, minutes_ago=90))  # 5 are outside the hour
    assert "card_testing_declines" not in _firing(migrated_url, settings)
    _add(migrated_url, _declines(1, start=100))
    assert "card_testing_declines" in _firing(migrated_url, settings)
    signal = next(s for s in fraud_signals.signals(UnitOfWork(migrated_url), settings=settings)
                  if s.key == "card_testing_declines")
    assert signal.value == 4 and "top reasons: incorrect_cvc ×3, card_declined ×1" in signal.detail


def test_small_charges_alert_at_the_threshold_not_below(migrated_url: str) -> None:
    settings = _settings(migrated_url)
    at = utcnow() - timedelta(minutes=3)
    _add(migrated_url, [Charge(id=f"ch_small_{i}", amount=amount, currency="usd", status="succeeded", created=at)
                        for i, amount in enumerate((50, 100, 101, 2900))])  # 2 small, 101 is not
    assert "card_testing_small_charges" not in _firing(migrated_url, settings)
    _add(migrated_url, [Charge(id="ch_small_x", amount=1, currency="usd", status="succeeded", created=at)])
    assert "card_testing_small_charges" in _firing(migrated_url, settings)


@pytest.mark.parametrize(("model", "key"), [(Dispute, "dispute_volume"), (FraudWarning, "efw_frequency")])
def test_daily_volumes_alert_at_the_threshold_not_below(migrated_url: str, model: Any, key: str) -> None:
    settings = _settings(migrated_url)

    def row(i: int, hours_ago: float) -> Any:
        fields = {"id": f"x_{key}_{i}", "amount": 1000, "currency": "usd", "created": utcnow() - timedelta(
            hours=hours_ago)}
        if model is Dispute:
            return Dispute(charge_id=f"ch_{i}", status="needs_response", **fields)
        return FraudWarning(charge_id=f"ch_{i}", actionable=True, **fields)

    _add(migrated_url, [row(1, 2), row(2, 30)])  # one inside the 24 h, one outside
    assert key not in _firing(migrated_url, settings)
    _add(migrated_url, [row(3, 20)])
    assert key in _firing(migrated_url, settings)


def test_a_zero_threshold_turns_a_signal_off(migrated_url: str) -> None:
    settings = _settings(migrated_url, ALERT_CARD_DECLINES_PER_HOUR="0")
    _add(migrated_url, _declines(50))
    assert "card_testing_declines" not in _firing(migrated_url, settings)


def test_the_board_shows_each_signal_with_its_threshold(shell_runtime: Any) -> None:  # noqa: F811
    from tests.conftest import app_test_for, page_text

    _add(shell_runtime.settings.database_url, _declines(25))
    at = app_test_for("first_24h", "admin")
    assert not at.exception
    table = next(df.value for df in at.dataframe if "signal" in df.value.columns)
    rows = {r["signal"]: r for r in table.to_dict("records")}
    assert rows["Card testing: declined charges"]["now"] == 25
    assert rows["Card testing: declined charges"]["state"] == "ALERT"
    assert rows["Dispute volume"]["state"] == "ok"
    assert "Card testing: declined charges" in page_text(at)  # the alert above the board too
