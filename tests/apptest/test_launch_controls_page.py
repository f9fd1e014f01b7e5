"""The Launch controls page per role, and the banner every admin page shows while a kill
switch is on: pausing needs a reason and a confirmation, resuming a confirmation; both
are audited and change the switch every worker reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import AuditLog
from services import switches
from services.audit import SystemCaller
from tests.apptest.test_golive_pages import golive_page_runtime  # noqa: F401,F811 (fixture)
from tests.conftest import ADMIN_EMAIL, app_test_for, page_direct_test, page_text


def _button(at: Any, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def test_signed_out_and_non_admin_cannot_open_it(shell_runtime: Any) -> None:
    for role in ("signed_out", "non_admin"):
        at = page_direct_test("launch_controls", role)
        assert "Launch controls" not in [t.value for t in at.title]
        assert not [b for b in at.button if b.label.startswith(("Pause", "Resume"))]
    assert not switches.switch_state(shell_runtime.uow(), "processing").paused


def test_admin_pauses_with_a_reason_and_a_confirmation_then_resumes(shell_runtime: Any) -> None:
    at = app_test_for("launch_controls", "admin")
    assert not at.exception
    assert "Events waiting (verified, not yet processed)" in page_text(at)
    _button(at, "Pause…").click()  # the first one: processing
    at.run()
    assert "Give a reason" in page_text(at)
    assert not switches.switch_state(shell_runtime.uow(), "processing").paused
    at.text_input(key="reason_processing").input("Handler bug on launch day")
    _button(at, "Pause…").click()
    at.run()
    assert "Pause event processing" in page_text(at)  # the confirmation, nothing changed yet
    assert not switches.switch_state(shell_runtime.uow(), "processing").paused
    _button(at, "Pause now").click()
    at.run()
    state = switches.switch_state(shell_runtime.uow(), "processing")
    assert state.paused and state.by == ADMIN_EMAIL and state.reason == "Handler bug on launch day"
    text = page_text(at)
    assert "Event processing paused." in text and "Event processing is PAUSED by" in text  # page + banner
    _button(at, "Resume…").click()
    at.run()
    _button(at, "Resume now").click()
    at.run()
    assert not switches.switch_state(shell_runtime.uow(), "processing").paused
    with shell_runtime.uow() as uow:
        actions = [(r.action, r.result, r.actor) for r in uow.session.execute(
            select(AuditLog).where(AuditLog.action.like("switch.%")).order_by(AuditLog.id)).scalars()]
    assert actions == [("switch.pause", "ok", ADMIN_EMAIL), ("switch.resume", "ok", ADMIN_EMAIL)]


def test_every_admin_page_shows_the_banner_while_paused(shell_runtime: Any) -> None:
    switches.pause_switch("reconcile", reason="Downgrades doubled in staging", actor=SystemCaller("lead@example.com"),
                          settings=shell_runtime.settings, uow=shell_runtime.uow())
    for page in ("disputes", "audit"):
        text = page_text(app_test_for(page, "admin"))
        assert "Automated downgrades (reconcile) is PAUSED by lead@example.com" in text
        assert "Downgrades doubled in staging" in text
    assert "PAUSED" not in page_text(app_test_for(None, "non_admin"))


def test_the_rollback_plan_shows_the_switch_that_performs_each_step(golive_page_runtime: Any) -> None:  # noqa: F811
    from tests.conftest import page_direct_test
    from tests.integration.golive_fixtures import ADMIN

    switches.pause_switch("reconcile", reason="Downgrades doubled", actor=SystemCaller("lead@example.com"),
                          settings=golive_page_runtime.settings, uow=golive_page_runtime.uow())
    at = page_direct_test("golive", ADMIN)
    assert not at.exception
    rollback = next(df.value for df in at.dataframe if "in the console" in df.value.columns)
    by_item = dict(zip(rollback["item"], rollback["in the console"], strict=True))
    assert by_item["Halt automated downgrades"].startswith("Launch controls: reconcile switch PAUSED by lead@")
    assert by_item["Pause webhook delivery if webhooks misbehave"] == "Launch controls: processing switch running"
    assert by_item["Manual corrections"] == "Launch controls (Manual correction) page"
    assert "billing-ops pause reconcile" in " ".join(rollback["how"])
