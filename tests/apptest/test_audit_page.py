"""The audit page per role: the chain result, filters, denied attempts, CSV export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from db.models import AuditLog
from services import audit
from tests.conftest import app_test_for, page_direct_test, page_text, rendered


def _seed(runtime: Any) -> None:
    with runtime.uow() as uow:
        for actor, action, result in [
            ("ops@example.com", "efw.refund", "ok"),
            ("viewer@outside.io", "efw.refund", "denied"),
            ("ops@example.com", "disputes.submit", "ok"),
        ]:
            audit.record(uow, actor=actor, action=action, result=result, target="issfr_1",
                         idempotency_key="refund:efw:issfr_1")
        uow.commit()


def test_admin_sees_entries_and_a_verified_chain(shell_runtime: Any) -> None:
    _seed(shell_runtime)
    at, text = rendered("audit", "admin")
    assert "Chain verified: 3 rows" in text
    frame = at.dataframe[0].value
    assert list(frame.columns)[:3] == ["result", "id", "at"]  # the outcome is the first thing read
    assert list(frame["action"]) == ["disputes.submit", "efw.refund", "efw.refund"]
    assert "1 denied attempt(s)" in text
    assert at.get("download_button")


def test_filter_by_result_shows_only_denials(shell_runtime: Any) -> None:
    _seed(shell_runtime)
    at = app_test_for("audit", "admin")
    result_box = [box for box in at.selectbox if box.label == "Result"][0]
    result_box.set_value("denied")
    [button for button in at.button if button.label == "Apply filters"][0].click()
    at.run()
    frame = at.dataframe[0].value
    assert list(frame["actor"]) == ["viewer@outside.io"]


def test_tampering_shows_the_first_broken_row(shell_runtime: Any) -> None:
    _seed(shell_runtime)
    with shell_runtime.uow() as uow:
        first_id = uow.session.query(AuditLog.id).order_by(AuditLog.id).first()[0]
        uow.session.execute(update(AuditLog).where(AuditLog.id == first_id).values(actor="someone@else.io"))
        uow.commit()
    at = app_test_for("audit", "admin")
    assert f"Chain broken at row {first_id}" in page_text(at)


def test_empty_log_has_a_clear_state(shell_runtime: Any) -> None:
    at = app_test_for("audit", "admin")
    assert "No audit entries match" in page_text(at)
    assert not at.exception


def test_non_admin_and_signed_out_see_nothing(shell_runtime: Any) -> None:
    _seed(shell_runtime)
    for role in ("non_admin", "signed_out"):
        at = page_direct_test("audit", role)
        text = page_text(at)
        assert "No access" in text and "efw.refund" not in text and not at.dataframe


def test_deleting_the_newest_rows_shows_against_the_snapshot_anchor(shell_runtime: Any) -> None:
    from sqlalchemy import delete, select

    from services import metrics

    _seed(shell_runtime)
    metrics.take_snapshot(shell_runtime, actor="ops@example.com", hours=1)
    at = app_test_for("audit", "admin")
    assert "1 anchored head(s)" in page_text(at) and "unkeyed: set AUDIT_HMAC_KEY" in page_text(at)
    with shell_runtime.uow() as uow:
        ids = list(uow.session.execute(select(AuditLog.id).order_by(AuditLog.id)).scalars())
        uow.session.execute(delete(AuditLog).where(AuditLog.id.in_(ids[2:])))
        uow.commit()
    at = app_test_for("audit", "admin")
    assert "the newest rows were deleted" in page_text(at)
