"""The emulator's billing calendar: anchor-day months, leap years, the anchor's time of day."""

from __future__ import annotations

from datetime import UTC, datetime

from emulator.billing.calendar import boundary, next_boundary


def _ts(*parts: int) -> int:
    return int(datetime(*parts).replace(tzinfo=UTC).timestamp())  # type: ignore[arg-type]


def test_months_follow_the_anchor_day_and_keep_its_time() -> None:
    anchor = _ts(2027, 1, 31, 10, 15, 30)
    assert [boundary(anchor, "month", 1, n) for n in (1, 2, 3, 4)] == [
        _ts(2027, 2, 28, 10, 15, 30), _ts(2027, 3, 31, 10, 15, 30), _ts(2027, 4, 30, 10, 15, 30),
        _ts(2027, 5, 31, 10, 15, 30)]
    assert boundary(_ts(2028, 1, 31), "month", 1, 1) == _ts(2028, 2, 29)  # leap year
    assert boundary(_ts(2027, 11, 30), "month", 3, 1) == _ts(2028, 2, 29)
    assert boundary(_ts(2027, 1, 31), "month", 1, -1) == _ts(2026, 12, 31)


def test_years_across_february_29() -> None:
    anchor = _ts(2028, 2, 29, 8)
    assert [boundary(anchor, "year", 1, n) for n in (1, 2, 4)] == [_ts(2029, 2, 28, 8), _ts(2030, 2, 28, 8),
                                                                   _ts(2032, 2, 29, 8)]


def test_days_and_weeks_are_fixed_lengths_and_next_boundary_is_strictly_after() -> None:
    anchor = _ts(2027, 3, 1)
    assert boundary(anchor, "week", 2, 1) - anchor == 14 * 86_400
    assert boundary(anchor, "day", 1, 3) - anchor == 3 * 86_400
    assert next_boundary(anchor, "month", 1, anchor) == _ts(2027, 4, 1)
    assert next_boundary(anchor, "month", 1, _ts(2027, 4, 1)) == _ts(2027, 5, 1)
    assert next_boundary(_ts(2027, 1, 31), "month", 1, _ts(2027, 2, 28)) == _ts(2027, 3, 31)
    assert next_boundary(anchor, "month", 1, _ts(2031, 6, 15)) == _ts(2031, 7, 1)
