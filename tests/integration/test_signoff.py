"""Sign-off on SQLite and PostgreSQL: refused with a blocking preflight failure,
a failed QA case, the same person twice, a signer outside the role list or a
non-admin; accepted for two different people in the two roles; every attempt
audited; the frozen record never changes afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import AuditLog, QaResult, Signoff
from db.session import UnitOfWork
from services.auth import AccessDenied
from services.qa_matrix import CASE_IDS, code_version, record_manual_result
from services.runtime import Runtime
from services.signoff import SignoffRefused, launch_record, sign, summary_markdown
from tests.integration.golive_fixtures import (
    ADMIN,
    ENG_LEAD,
    PRODUCT_OWNER,
    FakePreflightGateway,
    golive_settings,
    make_launch_ready,
)


@pytest.fixture
def golive_runtime(migrated_url: str) -> Runtime:
    runtime = Runtime(golive_settings(migrated_url))
    runtime.__dict__["gateway"] = FakePreflightGateway()
    make_launch_ready(runtime)
    return runtime


def _record_results(runtime: Runtime, statuses: dict[str, str] | None = None, version: str | None = None) -> None:
    with runtime.uow() as uow:
        for case_id in CASE_IDS:
            status = (statuses or {}).get(case_id, "passed")
            uow.session.add(QaResult(run_id=None, case_id=case_id, status=status, manual=False,
                                     failed_expectation=None if status == "passed" else "Stripe subscription is "
                                     "switched to Basic", evidence={"ids": {"subscription": f"sub_{case_id}"}},
                                     actor=ADMIN, code_version=version or code_version(), duration_ms=1200))
        uow.commit()


def _sign(runtime: Runtime, role: str, who: str) -> dict[str, Any]:
    return sign(role, actor=who, settings=runtime.settings, uow=runtime.uow(), runtime=runtime)


def _audit(runtime: Runtime) -> list[tuple[str, str, str, str | None]]:
    with runtime.uow() as uow:
        rows = uow.session.execute(select(AuditLog).where(AuditLog.action == "golive.signoff")
                                   .order_by(AuditLog.id)).scalars()
        return [(r.actor, r.result, r.target or "", r.error) for r in rows]


def _signoff_count(runtime: Runtime) -> int:
    with runtime.uow() as uow:
        return int(uow.session.execute(select(func.count()).select_from(Signoff)).scalar_one())


def test_two_people_sign_and_the_record_is_frozen(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime)
    first = _sign(golive_runtime, "eng_lead", ENG_LEAD)
    assert first["signer"] == ENG_LEAD and first["code_version"] == code_version()
    assert len(first["qa_results"]["cases"]) == 8
    assert all(r["status"] == "passed" for r in first["qa_results"]["cases"].values())
    assert any(c["id"] == "webhook.endpoint" and c["passed"] for c in first["preflight"]["results"])
    assert first["metrics"], "a metrics snapshot (or why it is unavailable) is frozen"
    record = launch_record(golive_runtime.uow(), version=code_version())
    assert record is not None and not record.complete
    _sign(golive_runtime, "product_owner", PRODUCT_OWNER)
    record = launch_record(golive_runtime.uow(), version=code_version())
    assert record is not None and record.complete
    assert [s["role"] for s in record.signatures] == ["eng_lead", "product_owner"]
    summary = summary_markdown(record)
    assert "SIGNED OFF" in summary and ENG_LEAD in summary and PRODUCT_OWNER in summary
    assert "| upgrade | passed |" in summary
    # Later: a failing QA result and a broken endpoint never edit the frozen record, and nobody can re-sign.
    _record_results(golive_runtime, {"upgrade": "failed"})
    golive_runtime.gateway.endpoints = []  # type: ignore[attr-defined]
    with pytest.raises(SignoffRefused, match="already signed off"):
        _sign(golive_runtime, "eng_lead", ENG_LEAD)
    again = launch_record(golive_runtime.uow(), version=code_version())
    assert again is not None and again.signatures == record.signatures
    assert [a[1] for a in _audit(golive_runtime)] == ["ok", "ok", "refused"]


def test_refused_with_a_blocking_preflight_failure(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime)
    golive_runtime.gateway.endpoints = []  # type: ignore[attr-defined]
    with pytest.raises(SignoffRefused, match="webhook.endpoint"):
        _sign(golive_runtime, "eng_lead", ENG_LEAD)
    assert _signoff_count(golive_runtime) == 0
    actor, result, _target, error = _audit(golive_runtime)[-1]
    assert (actor, result) == (ENG_LEAD, "refused") and "blocking" in (error or "")


def test_refused_with_a_failed_or_missing_qa_case(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime, {"reconciliation_applies": "failed"})
    with pytest.raises(SignoffRefused, match="Reconciliation: failed"):
        _sign(golive_runtime, "eng_lead", ENG_LEAD)
    # Results recorded at another code version do not count.
    _record_results(golive_runtime, version="0ldc0de")
    with pytest.raises(SignoffRefused, match="not green"):
        _sign(golive_runtime, "product_owner", PRODUCT_OWNER)
    assert _signoff_count(golive_runtime) == 0
    assert [a[1] for a in _audit(golive_runtime)] == ["refused", "refused"]


def test_a_later_pass_replaces_a_failure_and_manual_passes_count(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime, {"portal_downgrade": "failed"})
    record_manual_result("portal_downgrade", True, "Downgraded in the hosted portal; console showed Basic.",
                         actor=ADMIN, settings=golive_runtime.settings, uow=golive_runtime.uow())
    assert _sign(golive_runtime, "eng_lead", ENG_LEAD)["qa_results"]["cases"]["portal_downgrade"]["status"] == \
        "manual_pass"


def test_same_person_twice_is_refused(golive_runtime: Runtime, migrated_url: str) -> None:
    both = golive_settings(migrated_url, SIGNOFF_PRODUCT_OWNERS=f"{ENG_LEAD},{PRODUCT_OWNER}")
    runtime = Runtime(both)
    runtime.__dict__["gateway"] = FakePreflightGateway()
    make_launch_ready(runtime)
    _record_results(runtime)
    _sign(runtime, "eng_lead", ENG_LEAD)
    with pytest.raises(SignoffRefused, match="two different people"):
        _sign(runtime, "product_owner", ENG_LEAD)
    with pytest.raises(SignoffRefused, match="already signed"):
        _sign(runtime, "eng_lead", ENG_LEAD)
    assert _signoff_count(runtime) == 1
    assert [a[1] for a in _audit(runtime)] == ["ok", "refused", "refused"]


def test_signer_not_in_the_role_list_is_refused(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime)
    with pytest.raises(SignoffRefused, match="SIGNOFF_ENG_LEADS"):
        _sign(golive_runtime, "eng_lead", PRODUCT_OWNER)
    with pytest.raises(SignoffRefused, match="SIGNOFF_PRODUCT_OWNERS"):
        _sign(golive_runtime, "product_owner", ADMIN)
    assert _signoff_count(golive_runtime) == 0
    assert [a[:2] for a in _audit(golive_runtime)] == [(PRODUCT_OWNER, "refused"), (ADMIN, "refused")]


def test_non_admin_is_denied_and_audited(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime)
    with pytest.raises(AccessDenied):
        _sign(golive_runtime, "eng_lead", "eng.lead@outside.io")
    assert _audit(golive_runtime) == [("eng.lead@outside.io", "denied", "", None)]


def test_unknown_case_and_empty_notes_are_refused(golive_runtime: Runtime) -> None:
    from services.qa_matrix import QaRefused

    with pytest.raises(QaRefused, match="notes"):
        record_manual_result("upgrade", True, "  ", actor=ADMIN, settings=golive_runtime.settings,
                             uow=golive_runtime.uow())
    with pytest.raises(QaRefused, match="Unknown"):
        record_manual_result("teleport", True, "x", actor=ADMIN, settings=golive_runtime.settings,
                             uow=golive_runtime.uow())
    with UnitOfWork(golive_runtime.engine) as uow:
        assert uow.session.execute(select(func.count()).select_from(QaResult)).scalar_one() == 0


def test_the_database_allows_one_signature_per_role(golive_runtime: Runtime) -> None:
    """Two people racing for one role: the unique (launch, role) constraint keeps one."""
    from sqlalchemy.exc import IntegrityError

    with golive_runtime.uow() as uow:
        uow.session.add(Signoff(launch_key="go-live@x", role="eng_lead", signer=ENG_LEAD))
        uow.commit()
    with golive_runtime.uow() as uow, pytest.raises(IntegrityError):
        uow.session.add(Signoff(launch_key="go-live@x", role="eng_lead", signer="other.lead@example.com"))
        uow.commit()


def _reopen(runtime: Runtime, key: str) -> None:
    from services.checklist import update_item

    update_item(key, owner=ADMIN, status="open", note="not yet", actor=ADMIN, settings=runtime.settings,
                uow=runtime.uow())


def _clear_golive_time(runtime: Runtime) -> None:
    from sqlalchemy import delete

    from db.models import AppSetting
    from services.metrics import GOLIVE_KEY

    with runtime.uow() as uow:
        uow.session.execute(delete(AppSetting).where(AppSetting.key == GOLIVE_KEY))
        uow.commit()


def _fire_invalid_signature_alert(runtime: Runtime) -> None:
    from services import metric_points

    with runtime.uow() as uow:
        metric_points.record_metric(uow, metric_points.WEBHOOK_INVALID_SIGNATURE,
                                    value=runtime.settings.alert_invalid_signatures_per_hour)
        uow.commit()


def test_not_ready_is_refused_with_every_reason(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime)
    _reopen(golive_runtime, "rollback_owner")
    _clear_golive_time(golive_runtime)
    _fire_invalid_signature_alert(golive_runtime)
    with pytest.raises(SignoffRefused) as refused:
        _sign(golive_runtime, "eng_lead", ENG_LEAD)
    message = refused.value.message
    assert "Checklist item open: Rollback owner named" in message
    assert "Alert firing: Invalid webhook signatures" in message
    assert "go-live time is not set" in message
    assert "can override with a written reason" in message
    assert _signoff_count(golive_runtime) == 0
    assert _audit(golive_runtime)[-1][1] == "refused"
    # The product owner cannot sign first, nor override.
    with pytest.raises(SignoffRefused, match="not ready"):
        _sign(golive_runtime, "product_owner", PRODUCT_OWNER)
    with pytest.raises(SignoffRefused, match="Only an engineering lead"):
        sign("product_owner", actor=PRODUCT_OWNER, settings=golive_runtime.settings, uow=golive_runtime.uow(),
             runtime=golive_runtime, override_reason="We launch anyway because marketing said so today.")
    assert _signoff_count(golive_runtime) == 0


def test_an_eng_lead_override_needs_a_reason_and_is_frozen(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime)
    _reopen(golive_runtime, "support_macros")
    with pytest.raises(SignoffRefused, match="at least 20 characters"):
        sign("eng_lead", actor=ENG_LEAD, settings=golive_runtime.settings, uow=golive_runtime.uow(),
             runtime=golive_runtime, override_reason="because")
    reason = "Support macros are written; the helpdesk import runs tonight, owner Sam."
    first = sign("eng_lead", actor=ENG_LEAD, settings=golive_runtime.settings, uow=golive_runtime.uow(),
                 runtime=golive_runtime, override_reason=reason)
    frozen = first["preflight"]["readiness"]
    assert frozen["override"]["by"] == ENG_LEAD and frozen["override"]["reason"] == reason
    assert frozen["override"]["covers"] == ["checklist:support_macros"]
    # The product owner signs for exactly the reasons the override named ...
    second = _sign(golive_runtime, "product_owner", PRODUCT_OWNER)
    assert second["preflight"]["readiness"]["covered_by_override_of"] == ENG_LEAD
    record = launch_record(golive_runtime.uow(), version=code_version())
    assert record is not None and record.complete
    summary = summary_markdown(record)
    assert f"OVERRIDDEN by {ENG_LEAD}" in summary and reason in summary
    with golive_runtime.uow() as uow:
        row = uow.session.execute(select(AuditLog).where(AuditLog.action == "golive.signoff",
                                                         AuditLog.result == "ok").order_by(AuditLog.id)).scalars()
        details = [r.details for r in row]
    assert details[0]["override_reason"] == reason and details[0]["not_ready"] == ["checklist:support_macros"]


def test_a_new_reason_after_the_override_still_refuses_the_second_signature(golive_runtime: Runtime) -> None:
    _record_results(golive_runtime)
    _reopen(golive_runtime, "support_macros")
    sign("eng_lead", actor=ENG_LEAD, settings=golive_runtime.settings, uow=golive_runtime.uow(),
         runtime=golive_runtime, override_reason="Support macros are written; the import runs tonight.")
    _fire_invalid_signature_alert(golive_runtime)
    with pytest.raises(SignoffRefused, match="Invalid webhook signatures") as refused:
        _sign(golive_runtime, "product_owner", PRODUCT_OWNER)
    assert "Support macros" not in refused.value.message  # covered by the override
    assert _signoff_count(golive_runtime) == 1
