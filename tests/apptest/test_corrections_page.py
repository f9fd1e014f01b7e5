"""Launch controls' manual correction per role against the emulator: an admin previews a
correction (before/after), confirms it and sees the result; Stripe and the audit log change once;
signed-out users and non-admins never reach the form."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog
from tests.conftest import app_test_for, page_direct_test, page_text
from tests.integration.test_corrections import make_world


def _button(at: Any, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


@pytest.fixture
def sqlite_world(emulator: Any, runtime_factory: Any, migrated_sqlite_url: str) -> Any:
    return make_world(emulator, runtime_factory, migrated_sqlite_url)


@pytest.mark.parametrize("role", ["signed_out", "non_admin"])
def test_others_never_reach_the_correction_form(shell_runtime: Any, role: str) -> None:
    for at in (app_test_for("launch_controls", role), page_direct_test("launch_controls", role)):
        assert not at.exception
        assert "Manual correction" not in page_text(at)
        assert "Preview correction" not in [b.label for b in at.button]


def test_admin_previews_confirms_and_sees_before_and_after(sqlite_world: Any) -> None:
    rt, _prices, sid = sqlite_world
    at = app_test_for("launch_controls", "admin")
    assert not at.exception and "Manual correction" in page_text(at)
    at.text_input(key="correction_sub").input(sid)
    at.selectbox(key="correction_kind").set_value("set_cancel_at_period_end")
    _button(at, "Preview correction").click()
    at.run()
    assert not at.exception
    preview = next(df.value for df in at.dataframe if "changes" in df.value.columns)
    row = preview[preview["field"] == "cancel_at_period_end"].iloc[0]
    assert (row["before"], row["after"], row["changes"]) == ("false", "true", "yes")
    assert rt.gateway.retrieve_subscription(sid)["cancel_at_period_end"] is False  # nothing sent yet
    _button(at, "Apply correction…").click()
    at.run()
    assert "Idempotency key: correction:" in page_text(at)
    _button(at, "Apply now").click()
    at.run()
    assert not at.exception
    assert f"Corrected {sid}" in page_text(at)
    assert rt.gateway.retrieve_subscription(sid)["cancel_at_period_end"] is True
    with rt.uow() as uow:
        rows = [(r.result, r.target) for r in uow.session.execute(
            select(AuditLog).where(AuditLog.action == "subscription.correct")).scalars()]
    assert rows == [("ok", sid)]


def test_a_refused_preview_says_why(sqlite_world: Any) -> None:
    _rt, _prices, sid = sqlite_world
    at = app_test_for("launch_controls", "admin")
    at.text_input(key="correction_sub").input(sid)
    at.selectbox(key="correction_kind").set_value("clear_pending_plan")
    _button(at, "Preview correction").click()
    at.run()
    assert "has no pending plan" in page_text(at)
    assert "Apply correction…" not in [b.label for b in at.button]
