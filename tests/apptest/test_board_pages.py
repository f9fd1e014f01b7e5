"""The first-24h board and the dunning page per role, incl. an empty DB."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from db.models import Invoice, MetricsSnapshot
from db.models.base import utcnow
from services import metric_points as m
from tests.conftest import app_test_for, chart_layouts, database_contents, page_direct_test, page_text, rendered


def _data(runtime: Any) -> None:
    now = utcnow()
    with runtime.uow() as uow:
        for minutes in (5, 70, 130):
            m.record_metric(uow, m.INVOICE_PAID, at=now - timedelta(minutes=minutes))
        for _ in range(12):
            m.record_metric(uow, m.WEBHOOK_INVALID_SIGNATURE, at=now - timedelta(minutes=3))
        uow.session.add(Invoice(id="in_open", stripe_customer_id="cus_1", status="open", amount_due=2900,
                                currency="usd", plan="pro", payment_failed_at=now - timedelta(hours=3)))
        uow.session.add(Invoice(id="in_done", stripe_customer_id="cus_2", status="paid", amount_due=900,
                                currency="usd", plan="basic", action_required_at=now - timedelta(hours=5),
                                recovered_at=now - timedelta(hours=4), recovery_method="customer_action",
                                paid_at=now - timedelta(hours=4)))
        uow.commit()


def test_board_with_data_alert_and_snapshot(runtime: Any) -> None:
    _data(runtime)
    at, text = rendered("first_24h")
    assert "Invalid webhook signatures" in text  # 12 in the last hour, alert at 10
    assert at.get("plotly_chart") and at.get("download_button")
    values = {x.label: x.value for x in at.metric}
    assert values["Invoices paid"] == "3" and values["Invalid signatures"] == "12"
    # Tiles read as words: no raw or truncated metric names.
    assert all("stripe." not in x.label and "…" not in x.label and "invoice." not in x.label for x in at.metric)
    assert {"Plan changes", "Downgrades applied", "Invoice payment failures"} <= set(values)
    assert values["Dunning recovery rate"] == "n/a"  # nobody entered dunning in this range
    [b for b in at.button if b.label == "Take snapshot"][0].click()
    at.run()
    assert "Snapshot 1 saved" in page_text(at)
    with runtime.uow() as uow:
        assert uow.session.get(MetricsSnapshot, 1) is not None


def test_board_shows_alerts_without_sending_or_writing(runtime: Any, monkeypatch: Any) -> None:
    from services import metrics

    _data(runtime)
    sent: list[str] = []
    monkeypatch.setattr(metrics, "capture_alert", lambda message, tags: sent.append(message))
    before = database_contents(runtime)
    _at, text = rendered("first_24h")
    assert "Invalid webhook signatures" in text  # shown: it fires
    assert sent == []  # sending is the worker's (services/worker.py)
    assert database_contents(runtime) == before


def test_count_charts_start_at_zero(runtime: Any) -> None:
    """An all-zero series (no dunning here) sits on the axis, not in the middle of -1..1."""
    _data(runtime)
    for page in ("first_24h", "dunning"):
        at, _text = rendered(page)
        layouts = chart_layouts(at)
        counted = [layout for layout in layouts if "title" not in layout or "How cases" not in str(layout["title"])]
        assert counted, page
        assert all(layout["yaxis"]["rangemode"] == "tozero" for layout in counted), page


def test_board_range_picker(runtime: Any) -> None:
    _data(runtime)
    at = app_test_for("first_24h", "admin")
    at.radio[0].set_value("1 h")
    at.run()
    metric = [x for x in at.metric if x.label == "Invoices paid"][0]
    assert metric.value == "1"  # only the point 5 minutes ago is inside the last hour


def test_empty_db_says_no_data_yet(runtime: Any) -> None:
    board = app_test_for("first_24h", "admin")
    assert "No data yet" in page_text(board) and not board.exception
    dunning = app_test_for("dunning", "admin")
    assert "No dunning or SCA cases" in page_text(dunning) and not dunning.exception


def test_dunning_page_figures(runtime: Any) -> None:
    _data(runtime)
    at = app_test_for("dunning", "admin")
    text = page_text(at)
    assert not at.exception and "Entered dunning" in text
    values = {x.label: x.value for x in at.metric}
    assert (values["Entered dunning"], values["Entered SCA"], values["SCA completed"]) == ("1", "1", "1")
    assert values["Recovery rate"] == "50 %" and values["Still open"] == "1" and values["Closed unpaid"] == "0"
    assert values["Median time to recover"] == "1 h"
    assert "in_open" in at.dataframe[-1].value.to_string()
    assert list(at.dataframe[-1].value["amount"]) == ["29.00 USD"] and "2900" not in page_text(at)


def test_other_roles_see_nothing(runtime: Any) -> None:
    _data(runtime)
    for page in ("first_24h", "dunning"):
        for role in ("non_admin", "signed_out"):
            at = page_direct_test(page, role)
            assert "No access" in page_text(at) and not at.dataframe and not at.get("plotly_chart")


def test_every_metric_has_a_readable_label() -> None:
    from services.metric_labels import LABELS, label

    assert set(LABELS) == set(m.ALL_METRICS)
    assert all("stripe." not in label(name) and "…" not in label(name) and "_" not in label(name)
               for name in m.ALL_METRICS)
    assert label("stripe.some.new_metric") == "Some new metric"
    from services.metric_labels import hours, percent

    assert (percent(0.4286), percent(None), hours(2.5)) == ("43 %", "n/a", "2.5 h")
