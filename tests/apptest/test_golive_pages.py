"""The Go-live, QA matrix and sign-off pages per role: admins see the preflight,
checklist, QA results and sign-off record and can act; signed-out users and
non-admins see none of it, through navigation or a direct page run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import select

from db.models import AuditLog, ChecklistItem, QaResult, Signoff
from db.session import UnitOfWork
from services.qa_matrix import CASE_IDS, code_version
from services.runtime import Runtime
from tests.conftest import (
    app_test_for,
    assert_page_hides,
    choose,
    click,
    database_contents,
    enter,
    installed_runtime,
    page_direct_test,
    page_text,
    rendered,
)
from tests.integration.golive_fixtures import (
    ENG_LEAD,
    PRODUCT_OWNER,
    FakePreflightGateway,
    golive_settings,
    make_launch_ready,
)

PAGES = ("golive", "qa_matrix", "signoff")
ADMIN_ONLY_WORDS = {"golive": "Preflight", "qa_matrix": "Cases passed", "signoff": "Readiness"}


@pytest.fixture
def golive_page_runtime(migrated_sqlite_url: str) -> Iterator[Runtime]:
    from services.checklist import seed_checklist

    seed_checklist(UnitOfWork(migrated_sqlite_url))  # as `billing-ops db upgrade` does
    with installed_runtime(Runtime(golive_settings(migrated_sqlite_url)), gateway=FakePreflightGateway()) as runtime:
        yield runtime


def _passed_results(runtime: Runtime) -> None:
    with runtime.uow() as uow:
        for case_id in CASE_IDS:
            uow.session.add(QaResult(case_id=case_id, status="passed", manual=False, evidence={},
                                     actor="qa@example.com",
                                     code_version=code_version(), duration_ms=900))
        uow.commit()


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("role", ["signed_out", "non_admin"])
def test_others_see_nothing(golive_page_runtime: Runtime, page: str, role: str) -> None:
    assert_page_hides(page, role, words=[ADMIN_ONLY_WORDS[page], "webhook.endpoint"], buttons=["Sign off"])


def _after_a_run() -> tuple[Any, str]:
    """The Go-live page once its admin pressed Run preflight."""
    at, _text = rendered("golive", "admin")
    click(at, "Run preflight")
    assert not at.exception
    return at, page_text(at)


def test_viewing_golive_writes_nothing_and_run_preflight_records_one(golive_page_runtime: Runtime) -> None:
    before = database_contents(golive_page_runtime)
    at, text = rendered("golive", "admin")
    assert "No preflight has been recorded yet" in text and "192 boxes" in text
    assert database_contents(golive_page_runtime) == before
    click(at, "Run preflight")
    text = page_text(at)
    assert "Preflight recorded: no blocking failures." in text
    assert "Last run:" in text and "by admin@example.com, less than a minute ago" in text
    with golive_page_runtime.uow() as uow:
        [run] = uow.session.execute(select(AuditLog).where(AuditLog.action == "preflight.run")).scalars().all()
        assert run.actor == "admin@example.com"


def test_an_unseeded_checklist_says_how_to_seed_it(migrated_sqlite_url: str) -> None:
    with installed_runtime(Runtime(golive_settings(migrated_sqlite_url)), gateway=FakePreflightGateway()):
        _at, text = rendered("golive", "admin")
    assert "The checklist is empty: run `billing-ops db upgrade`" in text


def test_golive_page_shows_preflight_and_edits_checklist(golive_page_runtime: Runtime) -> None:
    at, text = _after_a_run()
    assert "Ready: no blocking failures" in text
    assert "webhook.endpoint" in text and "Support macros ready" in text and "Halt automated downgrades" in text
    assert "SECRETCANARY" not in text
    choose(at, "Item", "rollback_owner")
    at.run()
    enter(at, "Owner", "Riley")
    choose(at, "Status", "done")
    click(at, "Save item")
    assert not at.exception
    with golive_page_runtime.uow() as uow:
        item = uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == "rollback_owner")).scalar_one()
        assert (item.owner, item.status, item.updated_by) == ("Riley", "done", "admin@example.com")


def test_golive_page_names_a_blocking_failure_and_its_fix(golive_page_runtime: Runtime) -> None:
    golive_page_runtime.gateway.endpoints.append(  # type: ignore[attr-defined]
        dict(golive_page_runtime.gateway.endpoints[0], id="we_dup"))  # type: ignore[attr-defined]
    _at, text = _after_a_run()
    assert "Not ready" in text and "webhook.duplicates" in text and "billing-ops prune-webhooks" in text


def test_qa_page_lists_cases_and_records_a_manual_result(golive_page_runtime: Runtime) -> None:
    at = app_test_for("qa_matrix", "admin")
    assert not at.exception
    text = page_text(at)
    assert "0/8" in text and "Portal downgrade" in text and "not run" in text
    choose(at, "Case ", "portal_downgrade")
    enter(at, "Notes", "Switched plan in the hosted portal.")
    click(at, "Record result")
    assert not at.exception
    assert "Recorded a manual pass" in page_text(at)
    with golive_page_runtime.uow() as uow:
        row = uow.session.execute(select(QaResult)).scalar_one()
        assert (row.case_id, row.status, row.actor) == ("portal_downgrade", "manual_pass", "admin@example.com")


def test_qa_page_refuses_to_run_in_live_mode(migrated_sqlite_url: str) -> None:
    runtime = Runtime(golive_settings(migrated_sqlite_url, STRIPE_API_KEY="sk_live_SECRETCANARY0123456789ab",
                                      STRIPE_MODE="live"))
    with installed_runtime(runtime, gateway=FakePreflightGateway()):
        at = app_test_for("qa_matrix", "admin")
        assert "refused here" in page_text(at)
        run_button = next(b for b in at.button if b.label == "Run QA matrix")
        assert run_button.disabled


def _product_owner_signs(at: Any) -> Any:
    """Sign as product owner on the page `at`, then open the record afresh (a new session)."""
    choose(at, "Sign as", "product_owner")
    click(at, "Sign off")
    st.cache_data.clear()
    return page_direct_test("signoff", PRODUCT_OWNER)


def test_signoff_page_refuses_until_green_then_freezes(golive_page_runtime: Runtime) -> None:
    make_launch_ready(golive_page_runtime)
    at = page_direct_test("signoff", ENG_LEAD)
    assert not at.exception
    assert "QA matrix not green" in page_text(at)
    # The page's own preflight run, not the recorded one (none is recorded here).
    assert "Preflight (run by this page within the last minute" in page_text(at)
    click(at, "Sign off")
    assert "not green" in " ".join(e.value for e in at.error)
    _passed_results(golive_page_runtime)
    st.cache_data.clear()
    at = page_direct_test("signoff", ENG_LEAD)
    assert "all 8 cases passed" in page_text(at)
    click(at, "Sign off")
    assert not at.exception
    assert "Signed as engineering lead" in page_text(at)
    at = _product_owner_signs(page_direct_test("signoff", PRODUCT_OWNER))
    text = page_text(at)
    assert "Signed off" in text and ENG_LEAD in text and PRODUCT_OWNER in text
    assert "Sign off" not in [b.label for b in at.button]  # read-only now
    # A later blocking failure is shown beside the record, which is unchanged.
    golive_page_runtime.gateway.endpoints = []  # type: ignore[attr-defined]
    st.cache_data.clear()
    at = page_direct_test("signoff", ENG_LEAD)
    assert "Since sign-off, the preflight reports blocking failures" in page_text(at)
    with golive_page_runtime.uow() as uow:
        assert len(uow.session.execute(select(Signoff)).scalars().all()) == 2


def test_signoff_page_tells_an_admin_outside_the_role_lists(golive_page_runtime: Runtime) -> None:
    at = app_test_for("signoff", "admin")
    assert "is not named in SIGNOFF_ENG_LEADS" in page_text(at)


def test_admin_runs_a_case_from_the_page_against_the_emulator(emulator: Any, runtime_factory: Any) -> None:
    """The page's button runs through the real service on the emulator and shows the outcome."""
    import json

    seeded = emulator.admin("seed", {"customers": 0})
    runtime = runtime_factory(STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]))
    st.cache_data.clear()
    at = app_test_for("qa_matrix", "admin")
    next(m for m in at.multiselect if m.label.startswith("Cases to run")).set_value(["upgrade"])
    click(at, "Run QA matrix")
    assert not at.exception
    text = page_text(at)
    assert "QA run 1: 1/1 passed." in text
    assert "1/8" in text  # the summary metric counts the new pass
    with runtime.uow() as uow:
        row = uow.session.execute(select(QaResult)).scalar_one()
        assert (row.case_id, row.status, row.actor) == ("upgrade", "passed", "admin@example.com")
    st.cache_data.clear()


@pytest.mark.parametrize("role", ["signed_out", "non_admin"])
def test_runbook_boxes_hidden_from_others(golive_page_runtime: Runtime, role: str) -> None:
    assert_page_hides("golive", role, words=["Runbook boxes", "why manual"])
    with golive_page_runtime.uow() as uow:  # the preflight never ran for them
        assert not uow.session.execute(select(AuditLog).where(AuditLog.action == "preflight.run")).scalars().all()


def test_golive_page_shows_who_ticks_every_runbook_box(golive_page_runtime: Runtime) -> None:
    at, text = _after_a_run()
    assert "Runbook boxes" in text and "192 boxes" in text and "still open" in text
    assert "Last run:" in text
    boxes = next(df.value for df in at.dataframe if "box" in df.value.columns)
    assert len(boxes) == 192
    tax = boxes[boxes["box"] == "numzy:2:9"].iloc[0]
    assert (tax["ticked by"], tax["check / item"], tax["result / status"], tax["who"]) == (
        "machine", "stripe.tax", "PASS", "preflight")
    assert tax["when"]
    qa = boxes[boxes["box"] == "numzy:6:1"].iloc[0]
    assert (qa["ticked by"], qa["result / status"], qa["who"]) == ("person", "open", "")
    assert "charge cards" in qa["why manual"]
    with golive_page_runtime.uow() as uow:
        run = uow.session.execute(select(AuditLog).where(AuditLog.action == "preflight.run")).scalar_one()
        assert run.actor == "admin@example.com"
    # A person ticks the QA item: its boxes now say who and when.
    choose(at, "Item", "qa_matrix")
    at.run()
    assert "Why manual:" in page_text(at)
    choose(at, "Status", "done")
    click(at, "Save item")
    assert not at.exception
    boxes = next(df.value for df in at.dataframe if "box" in df.value.columns)
    qa = boxes[boxes["box"] == "numzy:6:1"].iloc[0]
    assert (qa["result / status"], qa["who"]) == ("done", "admin@example.com") and qa["when"]


def test_signoff_page_lists_what_is_not_ready_and_takes_an_eng_lead_override(golive_page_runtime: Runtime) -> None:
    _passed_results(golive_page_runtime)
    at = page_direct_test("signoff", ENG_LEAD)
    text = page_text(at)
    assert "Not ready (" in text and "Checklist item open: Rollback owner named" in text
    assert "The go-live time is not set" in text
    click(at, "Sign off")
    assert "The launch is not ready" in " ".join(e.value for e in at.error)
    with golive_page_runtime.uow() as uow:
        assert uow.session.execute(select(Signoff)).scalars().all() == []
    reason = "Rollback owner is Sam (on call); checklist finished on paper, go-live time set after."
    enter(at, "Override reason", reason)
    click(at, "Sign off")
    assert not at.exception
    assert "Signed as engineering lead" in page_text(at)
    st.cache_data.clear()
    at = page_direct_test("signoff", PRODUCT_OWNER)
    assert f"every reason is covered by the override {ENG_LEAD} signed with" in page_text(at)
    text = page_text(_product_owner_signs(at))
    assert "Signed off" in text and f"overridden by {ENG_LEAD}" in text and reason in text
