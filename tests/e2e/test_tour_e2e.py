"""A browser tour of the whole console against `billing-ops demo`: every page as an admin,
the "no access" page as a non-admin; a screenshot of each goes to artifacts/screenshots."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app_pages.registry import ADMIN_SECTIONS
from tests.e2e.conftest import open_page, screenshot, sign_in

pytestmark = pytest.mark.e2e

# Pages whose heading says more than their navigation title.
HEADINGS = {
    "Preflight & checklist": "Go-live preflight & checklist",
    "QA matrix": "Plan-change QA matrix",
    "Sign-off": "Launch sign-off",
}
TITLES = [title for pages in ADMIN_SECTIONS.values() for _path, title, _slug in pages]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def test_admin_tour_of_every_page(demo_server: Any, page: Any) -> None:
    sign_in(page, demo_server, demo_server.admin_email)
    for title in TITLES:
        open_page(page, title, HEADINGS.get(title, title))
        assert page.locator("[data-testid='stException']").count() == 0, f"{title} shows an exception"
        body = page.inner_text("body")
        assert "No access" not in body and "Traceback" not in body, title
        assert "sk_test_" not in body and "whsec_" not in body, f"{title} shows a secret"
        screenshot(page, f"admin_{_slug(title)}")


def test_non_admin_sees_only_no_access(demo_server: Any, page: Any) -> None:
    sign_in(page, demo_server, demo_server.viewer_email)
    page.wait_for_selector("h1:has-text('No access')")
    body = page.inner_text("body")
    assert demo_server.viewer_email in body
    for title in TITLES:
        assert page.get_by_role("link", name=title, exact=True).count() == 0, f"{title} is linked for a non-admin"
    assert "dp_" not in body and "issfr_" not in body
    screenshot(page, "non_admin_no_access")


def test_signed_out_sees_only_the_sign_in(demo_server: Any, page: Any) -> None:
    page.goto(demo_server.console_url + "/disputes")  # a deep link while signed out
    page.get_by_role("textbox", name="Username").wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "Disputes" not in body.replace("Billing Ops Console", "")
    screenshot(page, "signed_out_sign_in")
