"""Pure rules of a reconciliation run: what is due, what is drift, the output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from services.reconciliation import (
    APPLY_DOWNGRADE,
    DRIFT_MISSING_IN_DB,
    DRIFT_PENDING_PAST_PERIOD_END,
    DRIFT_PENDING_WITHOUT_CANCEL,
    DRIFT_PLAN_MISMATCH,
    DRIFT_UNKNOWN_PRICE,
    LOST_CUSTOMER,
    ActionReport,
    DueDowngrade,
    ReconcileReport,
    downgrade_key,
    evaluate,
    format_run_table,
    run_to_json,
)
from tests.integration.reconcile_fixtures import NOW, settings_for, subscription

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "reconcile.schema.json").read_text())
SETTINGS = settings_for("sqlite://")
IN_DB = ("pro", "monthly")


def _kinds(sub: dict[str, Any], db_row: tuple[str | None, str | None] | None = IN_DB,
           now: int = NOW) -> tuple[DueDowngrade | None, set[str]]:
    due, findings = evaluate(sub, db_row, settings=SETTINGS, now=now, lookahead_seconds=900)
    return due, {f.kind for f in findings}


def test_downgrade_inside_the_lookahead_is_due_with_the_runbook_params() -> None:
    due, kinds = _kinds(subscription("sub_1", cancel_at_period_end=True, pending_plan="basic",
                                     period_end=NOW + 900))
    assert kinds == set()
    assert due is not None
    assert due.key == downgrade_key("sub_1", NOW + 900) == f"downgrade:sub_1:{NOW + 900}"
    assert due.params == {
        "items": [{"id": "si_1", "price": "price_basic_monthly"}],
        "proration_behavior": "none",
        "cancel_at_period_end": False,
        "metadata": {"pending_plan": "", "pending_interval": ""},
    }


def test_downgrade_outside_the_lookahead_is_left_alone() -> None:
    due, kinds = _kinds(subscription("sub_1", cancel_at_period_end=True, pending_plan="basic",
                                     period_end=NOW + 901))
    assert due is None and kinds == set()


def test_period_end_is_read_from_the_item_not_the_subscription() -> None:
    sub = subscription("sub_1", cancel_at_period_end=True, pending_plan="basic", period_end=NOW + 600)
    sub["current_period_end"] = NOW + 86400 * 30  # a pre-basil field must not be trusted
    due, _ = _kinds(sub)
    assert due is not None and due.key.endswith(str(NOW + 600))


def test_pending_interval_picks_the_price() -> None:
    sub = subscription("sub_1", cancel_at_period_end=True, pending_plan="basic", period_end=NOW + 60)
    sub["metadata"]["pending_interval"] = "yearly"
    due, _ = _kinds(sub)
    assert due is not None and due.params["items"][0]["price"] == "price_basic_yearly"


@pytest.mark.parametrize(
    ("sub", "db_row", "expected"),
    [
        (subscription("s", pending_plan="basic"), IN_DB, {DRIFT_PENDING_WITHOUT_CANCEL}),
        (subscription("s", pending_plan="basic", cancel_at_period_end=True, period_end=NOW - 1), IN_DB,
         {DRIFT_PENDING_PAST_PERIOD_END}),
        # Ended while the downgrade was pending: a lost customer, not drift to patch.
        (subscription("s", pending_plan="basic", cancel_at_period_end=True, status="canceled"), IN_DB,
         {LOST_CUSTOMER}),
        (subscription("s", pending_plan="basic", cancel_at_period_end=False, status="canceled"), IN_DB,
         {LOST_CUSTOMER}),
        (subscription("s"), ("basic", "monthly"), {DRIFT_PLAN_MISMATCH}),
        (subscription("s"), None, {DRIFT_MISSING_IN_DB}),
        (subscription("s", price="price_unmapped"), IN_DB, {DRIFT_UNKNOWN_PRICE}),
        (subscription("s", price="price_unmapped"), None, {DRIFT_UNKNOWN_PRICE, DRIFT_MISSING_IN_DB}),
        (subscription("s"), IN_DB, set()),
    ],
)
def test_drift_kinds(sub: dict[str, Any], db_row: tuple[str | None, str | None] | None, expected: set[str]) -> None:
    due, kinds = _kinds(sub, db_row)
    assert due is None and kinds == expected


def test_pending_plan_without_a_price_is_an_error_not_a_guess() -> None:
    due, findings = evaluate(
        subscription("s", cancel_at_period_end=True, pending_plan="enterprise", period_end=NOW + 60),
        IN_DB, settings=SETTINGS, now=NOW, lookahead_seconds=900,
    )
    assert due is None
    [finding] = findings
    assert finding.kind == APPLY_DOWNGRADE and finding.result == "error" and "enterprise" in (finding.error or "")


def _report() -> ReconcileReport:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    state = {"plan": "pro", "interval": "monthly", "cancel_at_period_end": True, "pending_plan": "basic",
             "current_period_end": NOW, "price": "price_pro_monthly", "status": "active", "pending_interval": None}
    return ReconcileReport(
        run_id=7, mode="apply", trigger="cron", actor="cron", started_at=start,
        finished_at=start + timedelta(seconds=2), now=NOW, lookahead_seconds=900, examined=3, applied=1,
        drift=1, list_calls=1,
        actions=[
            ActionReport("sub_a", APPLY_DOWNGRADE, "applied", before=state,
                         after={"plan": "basic", "stripe_params": {"x": 1}}, idempotency_key=f"downgrade:sub_a:{NOW}",
                         action_id=1),
            ActionReport("sub_b", DRIFT_UNKNOWN_PRICE, "reported", before=state,
                         after={"problem": "the subscription's price is not in the plan mapping"}, action_id=2),
        ],
    )


def test_json_document_matches_the_schema_and_hides_wire_params() -> None:
    document = run_to_json(_report())
    jsonschema.validate(document, SCHEMA)
    assert document["counts"] == {"examined": 3, "applied": 1, "planned": 0, "drift": 1, "errors": 0,
                                  "list_calls": 1}
    assert document["duration_seconds"] == 2.0
    assert "stripe_params" not in document["actions"][0]["after"]
    broken = dict(document, mode="sometimes")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_table_names_each_action() -> None:
    table = format_run_table(_report())
    assert "examined 3  applied 1" in table
    assert f"pro -> basic (downgrade:sub_a:{NOW})" in table
    assert "sub_b" in table and "not in the plan mapping" in table
