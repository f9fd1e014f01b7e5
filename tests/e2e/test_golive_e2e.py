"""Go-live in a real browser against `billing-ops demo`: the engineering lead reads
which runbook boxes the machine ticks and which are still manual, runs
the QA matrix and sees 8 passes, signs off; the product owner signs off; both
then see the frozen, read-only record with its printable summary."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, press, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e

QA_RUN_TIMEOUT_MS = 300_000
PAGE_TIMEOUT_MS = 120_000


PAGE_HEADINGS = {"QA matrix": "Plan-change QA matrix", "Sign-off": "Launch sign-off",
                 "Preflight & checklist": "Go-live preflight & checklist"}


def _open(page: Any, title: str) -> None:
    page.get_by_role("link", name=title).click()
    # The sign-off page runs the preflight against Stripe on first view; allow for a busy demo.
    page.wait_for_selector(f"h1:has-text('{PAGE_HEADINGS[title]}')", timeout=PAGE_TIMEOUT_MS)


def _sign(page: Any, role_label: str, override: str | None = None) -> None:
    _open(page, "Sign-off")
    if override:
        # The demo launch is not ready (checklist open, no go-live time): the eng lead overrides in writing.
        page.wait_for_selector("text=/Not ready \\(\\d+\\)/", timeout=PAGE_TIMEOUT_MS)
        box = page.get_by_role("textbox", name="Override reason (engineering lead only, when not ready)")
        box.fill(override)  # inside the form: sent with the Sign off click below
    if role_label != "Engineering lead":
        wait_until_idle(page)  # a click while the page still reruns closes the dropdown again
        page.locator("[data-testid='stSelectbox']").first.click()
        page.get_by_role("option", name=role_label).click()
    page.get_by_role("button", name="Sign off").click()
    page.wait_for_selector(f"text=Signed as {role_label.lower()}", timeout=120_000)


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").first.click()
    page.get_by_role("textbox", name="Username").wait_for(timeout=60_000)


def test_qa_matrix_then_two_person_signoff(demo_server: Any, page: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, demo_server, demo_server.eng_lead_email)
    _open(page, "Preflight & checklist")
    page.wait_for_selector("text=/192 boxes in both runbooks/", timeout=PAGE_TIMEOUT_MS)
    # Viewing the page runs nothing: the preflight is recorded by its button (or `billing-ops check`).
    wait_until_idle(page)
    press(page, "Run preflight", "Preflight recorded:", timeout_ms=PAGE_TIMEOUT_MS)
    # Under load the page can still be re-rendering its top half when the boxes show.
    page.wait_for_selector("text=/Last run: \\d{4}-/", timeout=PAGE_TIMEOUT_MS)
    body = page.inner_text("body")
    assert re.search(r"\d+ ticked by the machine \(\d+ passing\), \d+ by a person \(\d+ still open\)", body), \
        body[-3000:]
    assert "Last run:" in body
    page.screenshot(path=str(ARTIFACTS / "golive_runbook_boxes.png"), full_page=True)
    _open(page, "QA matrix")
    page.get_by_role("button", name="Run QA matrix").click()
    page.wait_for_selector("text=/QA run \\d+: \\d\\/8 passed/", timeout=QA_RUN_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "golive_qa_matrix.png"), full_page=True)
    body = page.inner_text("body")
    assert re.search(r"QA run \d+: 8/8 passed", body), body[-3000:]
    assert "8/8" in body

    _sign(page, "Engineering lead", override="Demo launch: checklist worked on paper, go-live time set after.")
    _sign_out(page)

    sign_in(page, demo_server, demo_server.product_owner_email)
    _sign(page, "Product owner")
    # A reload is a fresh Streamlit session (still signed in by the session cookie): the record comes from the DB.
    page.reload()
    page.wait_for_selector("[data-testid='stSidebarNav']", timeout=PAGE_TIMEOUT_MS)
    _open(page, "Sign-off")
    page.wait_for_selector("text=This record is frozen", timeout=PAGE_TIMEOUT_MS)
    body = page.inner_text("body")
    assert demo_server.eng_lead_email in body and demo_server.product_owner_email in body
    assert page.get_by_role("button", name="Sign off").count() == 0  # read-only now
    assert f"overridden by {demo_server.eng_lead_email}" in body
    # The record's tables render before the button; under load it can trail the "frozen" banner.
    page.get_by_role("button", name="Download summary (markdown)").wait_for(timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "golive_signed_off.png"), full_page=True)
