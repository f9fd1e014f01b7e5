"""Pure rules of the EFW service: the refund idempotency key, the percentile used for time to
decision, and bulk runs that keep going past a failing row."""

from __future__ import annotations

import pytest

from services import fraud_warnings as efw


def test_refund_key_is_derived_from_the_warning() -> None:
    assert efw.refund_key("issfr_123") == "refund:efw:issfr_123"


@pytest.mark.parametrize(
    ("values", "percentile", "expected"),
    [([4.0], 90, 4.0), ([1, 2, 3, 4, 5], 90, 5), ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9),
     ([10, 1, 5], 50, 5), ([3, 1, 2], 0, 1)],
)
def test_nearest_rank(values: list[float], percentile: float, expected: float) -> None:
    assert efw.nearest_rank(values, percentile) == expected


def test_nearest_rank_needs_values() -> None:
    with pytest.raises(ValueError):
        efw.nearest_rank([], 90)


def test_bulk_keeps_going_past_failures_and_reports_progress() -> None:
    seen: list[tuple[int, int]] = []

    def run(efw_id: str) -> str:
        if efw_id == "refused":
            raise efw.EfwActionError("The charge is disputed now")
        if efw_id == "broken":
            raise RuntimeError("database went away")
        return "done"

    outcomes = efw._bulk(["a", "refused", "broken", "b"], run, lambda done, total: seen.append((done, total)))
    assert [(o.efw_id, o.ok) for o in outcomes] == [("a", True), ("refused", False), ("broken", False), ("b", True)]
    assert outcomes[1].message == "The charge is disputed now"
    assert "RuntimeError" in outcomes[2].message and "database went away" not in outcomes[2].message
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
