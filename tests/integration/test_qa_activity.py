"""QA-matrix and test-clock activity is tagged as test and kept out of the First-24h figures,
its alerts and the reconciliation history; it is shown on its own."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from db.models import ReconcileRun
from db.models.base import utcnow
from services import metric_points as m
from services import metrics, reconciliation, webhook_counts, webhooks
from tests.conftest import app_test_for


def _failed_invoice(event_id: str, clock: str | None) -> dict[str, Any]:
    now = int(time.time())
    return {"id": event_id, "object": "event", "type": "invoice.payment_failed", "created": now, "livemode": False,
            "data": {"object": {"id": f"in_{event_id}", "object": "invoice", "customer": None, "status": "open",
                                "amount_due": 2900, "currency": "usd", "attempt_count": 1, "created": now,
                                "test_clock": clock, "lines": {"data": []},
                                "parent": {"subscription_details": {"subscription": f"sub_{event_id}"}}}}}


def _paid_invoice(event_id: str) -> dict[str, Any]:
    event = _failed_invoice(event_id, None)
    event["type"] = "invoice.paid"
    event["data"]["object"]["status"] = "paid"
    return event


def test_test_clock_activity_moves_no_production_figure_or_alert(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url, ALERT_INVOICE_FAILURE_BASELINE="0.1")
    # Production: 9 paid, 1 failed (10 %, at the baseline). QA: 5 failures on test-clock invoices.
    for n in range(9):
        webhooks.ingest_event(runtime, _paid_invoice(f"evt_prod_paid_{n}"), process=True, source="sync")
    webhooks.ingest_event(runtime, _failed_invoice("evt_prod_failed", None), process=True, source="sync")
    for n in range(5):
        webhooks.ingest_event(runtime, _failed_invoice(f"evt_qa_{n}", "clock_qa"), process=True, source="sync")
    with runtime.uow() as uow:  # a QA-matrix reconciliation run that applied a lot
        uow.session.add(ReconcileRun(mode="apply", trigger=webhook_counts.QA_TRIGGER, actor="po@example.com",
                                     applied=500, finished_at=utcnow()))
        uow.commit()

    start, end = utcnow() - timedelta(hours=1), utcnow() + timedelta(minutes=1)
    production = metrics.board(runtime.uow(), start=start, end=end)
    assert (production.totals[m.INVOICE_FAILED], production.totals[m.DUNNING_ENTERED]) == (1, 1)
    assert production.totals[m.INVOICE_PAID] == 9
    qa = metrics.board(runtime.uow(), start=start, end=end, test=True)
    assert (qa.totals[m.INVOICE_FAILED], qa.totals[m.INVOICE_PAID]) == (5, 0)
    fired = {a.key for a in metrics.active_alerts(runtime.uow(), settings=runtime.settings)}
    assert "invoice_failure_share" not in fired and "reconcile_applied_spike" not in fired
    assert reconciliation.recent_runs(runtime.uow()) == []
    assert [r["applied"] for r in reconciliation.recent_runs(runtime.uow(), qa=True)] == [500]
    counts = webhook_counts.delivery_counts(runtime.uow(), since=start)
    assert counts.backfilled == 10  # the five test-clock events are not production backfill either

    page = app_test_for("first_24h", "admin")
    assert not page.exception
    tiles = {x.label: x.value for x in page.metric}
    assert tiles["Invoice payment failures"] == "1" and tiles["QA: Invoice payment failures"] == "5"
    assert not page.error  # no alert fired
    history = app_test_for("reconciliation", "admin")
    assert not history.exception and "No reconciliation runs yet." in " ".join(i.value for i in history.info)
    assert "500" in history.dataframe[-1].value.to_string()


def test_a_real_qa_run_leaves_the_production_board_and_history_empty(emulator: Any,
                                                                      runtime_factory: Any) -> None:
    import json

    from services.qa_matrix import run_matrix_cli

    seeded = emulator.admin("seed", {"customers": 0})
    runtime = runtime_factory(STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]))
    lines: list[str] = []
    assert run_matrix_cli(runtime, case_ids=None, actor="qa@example.com", echo=lines.append), "\n".join(lines)
    start, end = utcnow() - timedelta(days=60), utcnow() + timedelta(days=60)
    production = metrics.board(runtime.uow(), start=start, end=end)
    leaked = {name: total for name, total in production.totals.items() if total}
    assert leaked == {}
    qa = metrics.board(runtime.uow(), start=start, end=end, test=True)
    assert qa.totals[m.INVOICE_PAID] > 0 and qa.totals[m.DOWNGRADE_APPLIED] >= 1
    assert metrics.active_alerts(runtime.uow(), settings=runtime.settings) == []
    assert reconciliation.recent_runs(runtime.uow()) == []
    assert len(reconciliation.recent_runs(runtime.uow(), qa=True)) >= 1


def test_test_clock_invoices_stay_out_of_dunning(runtime_factory: Any, database_url: str) -> None:
    from services import dunning

    runtime = runtime_factory(DATABASE_URL=database_url)
    webhooks.ingest_event(runtime, _failed_invoice("evt_dun_prod", None), process=True, source="sync")
    webhooks.ingest_event(runtime, _failed_invoice("evt_dun_qa", "clock_qa"), process=True, source="sync")
    summary = dunning.recovery_summary(runtime.uow(), since=utcnow() - timedelta(hours=1),
                                       until=utcnow() + timedelta(minutes=1))
    assert summary.dunning_entered == 1
    assert [c["invoice"] for c in dunning.open_cases(runtime.uow())] == ["in_evt_dun_prod"]
