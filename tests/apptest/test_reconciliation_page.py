"""The reconciliation page per role: history, a run's actions, drift with a
confirmed fix, the dry-run button and the alert banner; nothing for others."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import select

from db.models import AuditLog, ReconcileAction, ReconcileRun
from db.models.base import utcnow
from db.session import UnitOfWork
from services.reconciliation import run_reconciliation
from services.runtime import Runtime, set_runtime
from services.stripe_mapping import upsert_subscription
from tests.conftest import app_test_for, page_direct_test, page_text
from tests.integration.reconcile_fixtures import NOW, FakeGateway, settings_for, subscription


@pytest.fixture
def page_runtime(migrated_sqlite_url: str) -> Iterator[Any]:
    settings = settings_for(migrated_sqlite_url)
    runtime = Runtime(settings)
    gateway = FakeGateway([
        subscription("sub_due", cancel_at_period_end=True, pending_plan="basic", period_end=int(time.time()) + 600),
        subscription("sub_nocancel", pending_plan="basic"),
        subscription("sub_legacy", price="price_legacy_2019"),
    ])
    runtime.__dict__["gateway"] = gateway  # the cached_property's slot: no Stripe needed
    with UnitOfWork(migrated_sqlite_url) as uow:
        for sub in gateway.subscriptions.values():
            upsert_subscription(uow, sub, observed_at=NOW, settings=settings)
        uow.commit()
    set_runtime(runtime)
    st.cache_data.clear()  # the page caches reads for 15 s; each test starts from its own DB
    yield runtime
    st.cache_data.clear()
    set_runtime(None)


def _run(runtime: Any, *, apply: bool) -> Any:
    return run_reconciliation(settings=runtime.settings, uow=runtime.uow(), gateway=runtime.gateway, apply=apply,
                              actor="cli", trigger="manual")


def test_admin_sees_history_actions_and_drift(page_runtime: Any) -> None:
    dry = _run(page_runtime, apply=False)
    report = _run(page_runtime, apply=True)
    at = app_test_for("reconciliation", "admin")
    assert not at.exception
    history = at.dataframe[0].value
    assert list(history["run"]) == [report.run_id, dry.run_id]
    assert list(history["mode"]) == ["apply", "dry-run"]
    assert list(history["applied"]) == [1, 0] and list(history["status"]) == ["completed", "completed"]
    assert at.get("plotly_chart")  # applied/drift/errors per run
    actions = at.dataframe[1].value
    assert set(actions["kind"]) == {"apply_downgrade", "drift_pending_without_cancel", "drift_unknown_price"}
    applied = actions[actions["kind"] == "apply_downgrade"].iloc[0]
    assert applied["result"] == "applied" and "pro monthly" in applied["before"]
    assert "basic monthly" in applied["after"]
    text = page_text(at)
    assert "Drift findings" in text and "Alert" not in text
    drift = at.dataframe[2].value
    assert set(drift["subscription"]) == {"sub_nocancel", "sub_legacy"}


def test_dry_run_button_records_a_run_and_changes_nothing(page_runtime: Any) -> None:
    at = app_test_for("reconciliation", "admin")
    assert "No reconciliation runs yet" in page_text(at)
    next(b for b in at.button if b.label == "Run now (dry-run)").click()
    at.run()
    text = page_text(at)
    assert "would apply 1 downgrade(s)" in text and "found 2 drift finding(s)" in text
    assert page_runtime.gateway.updates == []
    with page_runtime.uow() as uow:
        run = uow.session.execute(select(ReconcileRun)).scalar_one()
        assert (run.mode, run.trigger, run.actor) == ("dry-run", "page", "admin@example.com")


def test_apply_fix_confirms_then_fixes_and_audits(page_runtime: Any) -> None:
    _run(page_runtime, apply=False)
    at = app_test_for("reconciliation", "admin")
    finding = next(box for box in at.selectbox if box.label == "Finding to fix")
    nocancel = next(o for o in finding.options if "sub_nocancel" in o)
    finding.set_value(int(nocancel.split()[0].lstrip("#")))
    at.run()
    next(b for b in at.button if b.label == "Apply this fix…").click()
    at.run()
    text = page_text(at)
    assert "remove metadata.pending_plan" in text  # the dialog says what will happen
    assert page_runtime.gateway.updates == []  # nothing yet: only the confirmation is shown
    next(b for b in at.button if b.label == "Apply fix").click()
    at.run()
    assert not at.exception
    assert page_runtime.gateway.subscriptions["sub_nocancel"]["metadata"] == {}
    with page_runtime.uow() as uow:
        row = uow.session.execute(
            select(ReconcileAction).filter_by(stripe_subscription_id="sub_nocancel")).scalar_one()
        assert row.result == "fixed" and row.after["fixed_by"] == "admin@example.com"
        entry = uow.session.execute(select(AuditLog).filter_by(action="reconcile.fix_drift")).scalar_one()
        assert (entry.actor, entry.result, entry.target) == ("admin@example.com", "ok", "sub_nocancel")


def test_alert_banner_when_a_run_applied_more_than_the_threshold(page_runtime: Any) -> None:
    with page_runtime.uow() as uow:
        uow.session.add(ReconcileRun(mode="apply", trigger="cron", actor="cron", applied=51, examined=900,
                                     started_at=utcnow(), finished_at=utcnow()))
        uow.commit()
    at = app_test_for("reconciliation", "admin")
    assert "Alert: Run 1 applied 51 downgrades, more than the alert threshold of 50." in page_text(at)


def test_non_admin_and_signed_out_see_nothing(page_runtime: Any) -> None:
    _run(page_runtime, apply=False)
    for role in ("non_admin", "signed_out"):
        for at in (page_direct_test("reconciliation", role), app_test_for("reconciliation", role)):
            text = page_text(at)
            assert "sub_due" not in text and "Run history" not in text and not at.dataframe
            assert not [b for b in at.button if b.label == "Run now (dry-run)"]
        assert "No access" in page_text(page_direct_test("reconciliation", role))


def test_last_applied_run_and_latest_dry_run_are_shown_apart(page_runtime: Any) -> None:
    applied = _run(page_runtime, apply=True)
    dry = run_reconciliation(settings=page_runtime.settings, uow=page_runtime.uow(), gateway=page_runtime.gateway,
                             apply=False, actor="cli", trigger="cli")
    at = app_test_for("reconciliation", "admin")
    assert not at.exception
    text = page_text(at)
    assert f"Run {applied.run_id} (manual, by cli)" in text and f"Run {dry.run_id} (cli, by cli)" in text
    assert f"Findings of the last applied run #{applied.run_id}" in text
    assert f"Findings of the latest dry-run #{dry.run_id}" in text


def test_no_fix_button_without_a_working_fix_and_a_dismissed_finding_is_hidden(page_runtime: Any) -> None:
    _run(page_runtime, apply=True)
    at = app_test_for("reconciliation", "admin")
    fix_options = next(box for box in at.selectbox if box.label == "Finding to fix").options
    assert not [o for o in fix_options if "sub_legacy" in o]  # unknown price: nothing to apply
    dismiss = next(box for box in at.selectbox if box.label == "Finding to dismiss")
    legacy = next(o for o in dismiss.options if "sub_legacy" in o)
    dismiss.set_value(int(legacy.split()[0].lstrip("#")))
    next(b for b in at.button if b.label == "Dismiss finding").click()
    at.run()
    assert "Write why this finding is dismissed (10+ characters)." in page_text(at)
    dismiss = next(box for box in at.selectbox if box.label == "Finding to dismiss")
    dismiss.set_value(int(legacy.split()[0].lstrip("#")))
    next(t for t in at.text_input if t.label == "Reason (required)").input("Legacy 2019 price kept for this account")
    next(b for b in at.button if b.label == "Dismiss finding").click()
    at.run()
    assert not at.exception
    assert "Dismissed #" in page_text(at)
    assert "sub_legacy" not in at.dataframe[2].value.to_string()  # hidden by default
    next(t for t in at.toggle if t.label == "Show dismissed findings").set_value(True)
    at.run()
    shown = at.dataframe[2].value
    row = shown[shown["subscription"] == "sub_legacy"].iloc[0]
    assert row["result"] == "dismissed" and row["dismissed"].endswith("Legacy 2019 price kept for this account")
    with page_runtime.uow() as uow:
        entry = uow.session.execute(select(AuditLog).filter_by(action="reconcile.dismiss_finding",
                                                               result="ok")).scalar_one()
        assert entry.actor == "admin@example.com" and entry.target == "sub_legacy"
    assert page_runtime.gateway.updates[-1][0] == "sub_due"  # only the run's own downgrade reached Stripe


def test_run_now_is_refused_without_the_price_mapping(migrated_sqlite_url: str) -> None:
    from services.config import load_settings

    settings = load_settings({"DATABASE_URL": migrated_sqlite_url, "STRIPE_API_KEY": "sk_test_fake",
                              "ADMIN_EMAILS": "admin@example.com"}, env_file=None)
    runtime = Runtime(settings)
    runtime.__dict__["gateway"] = FakeGateway([subscription("sub_1")])
    set_runtime(runtime)
    st.cache_data.clear()
    try:
        at = app_test_for("reconciliation", "admin")
        next(b for b in at.button if b.label == "Run now (dry-run)").click()
        at.run()
        assert not at.exception
        # The refusal is flashed after the page's own prefix ("The dry-run did not finish: ...").
        assert any("Reconciliation refused: Required plans are not mapped" in str(e.value).replace("\\", "")
                   for e in at.error)
        assert "No reconciliation runs yet" in page_text(at)
        with runtime.uow() as uow:
            assert uow.session.execute(select(ReconcileRun)).first() is None
            entry = uow.session.execute(select(AuditLog).filter_by(action="reconcile.run")).scalar_one()
            assert (entry.result, entry.details["trigger"]) == ("refused", "page")
    finally:
        st.cache_data.clear()
        set_runtime(None)
