import pytest

from services.percentiles import nearest_rank


@pytest.mark.parametrize(("values", "percentile", "expected"), [
    ([5.0], 90, 5.0),
    ([1.0, 5.0, 24.0], 90, 24.0),
    ([1.0, 5.0, 24.0], 50, 5.0),
    ([float(v) for v in range(1, 11)], 90, 9.0),
    ([float(v) for v in range(1, 6)], 90, 5.0),  # ceil(4.5) = the 5th, not the 4th
    ([3.0, 1.0, 2.0], 0, 1.0),
])
def test_nearest_rank_is_one_of_the_values(values: list[float], percentile: float, expected: float) -> None:
    assert nearest_rank(values, percentile) == expected


def test_nearest_rank_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        nearest_rank([], 90)


def test_dispute_analytics_states_its_p90_by_nearest_rank() -> None:
    from services.dispute_analytics import Analytics

    def analytics(hours: list[float]) -> Analytics:
        return Analytics([], [], {}, {}, {}, {}, hours, 0, 0, [])

    assert analytics([1.0, 2.0, 10.0]).p90_respond_hours == 10.0  # interpolation read 8.4, a wait nobody had
    assert analytics([4.0]).p90_respond_hours == 4.0
    assert analytics([]).p90_respond_hours is None and analytics([]).median_respond_hours is None
