"""The shell: signed-out users see only the sign-in, non-admins only "no access",
admins the navigation; no admin page renders for anyone else, even opened directly."""

from __future__ import annotations

from typing import Any

import pytest

from app_pages.registry import ADMIN_SECTIONS
from tests.conftest import ADMIN_EMAIL, VIEWER_EMAIL, app_test_for, identity_for, page_direct_test, page_text

PAGES = sorted({path.rsplit("/", 1)[-1].removesuffix(".py") for pages in ADMIN_SECTIONS.values()
                for path, _t, _s in pages})
TITLES = [title for pages in ADMIN_SECTIONS.values() for _p, title, _s in pages]


def test_signed_out_sees_only_sign_in(shell_runtime: Any) -> None:
    at = app_test_for(None, "signed_out")
    text = page_text(at)
    assert not at.exception
    assert "Billing Ops Console" in text
    assert [field.label for field in at.text_input][:2] == ["Username", "Password"]
    for title in TITLES:
        assert title not in text


def test_sign_in_form_signs_an_admin_in(shell_runtime: Any) -> None:
    at = app_test_for(None, "signed_out")
    at.text_input[0].input(ADMIN_EMAIL)
    at.text_input[1].input("pw-admin")
    at.button[0].click()
    at.run()
    at.run()
    assert at.session_state["identity"].email == ADMIN_EMAIL
    assert "No access" not in page_text(at)
    # A browser session was started: its record is live, and the page hands its one-time token over.
    from services import web_sessions

    session_id = at.session_state["identity"].session_id
    assert web_sessions.check(shell_runtime.uow(), shell_runtime.settings, session_id, touch=False)[0] is not None
    assert any("/auth/session" in str(element.proto) for element in at.get("html"))


def test_wrong_password_is_refused(shell_runtime: Any) -> None:
    at = app_test_for(None, "signed_out")
    at.text_input[0].input(ADMIN_EMAIL)
    at.text_input[1].input("wrong")
    at.button[0].click()
    at.run()
    assert "identity" not in at.session_state
    assert "incorrect" in page_text(at)


def test_non_admin_sees_only_no_access(shell_runtime: Any) -> None:
    at = app_test_for(None, "non_admin")
    text = page_text(at)
    assert "No access" in text and VIEWER_EMAIL in text
    for title in TITLES:
        assert title not in text


def test_admin_gets_every_page(shell_runtime: Any) -> None:
    at = app_test_for(None, "admin")
    assert not at.exception
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert "No access" not in page_text(at)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("role", ["signed_out", "non_admin"])
def test_admin_page_opened_directly_shows_nothing(shell_runtime: Any, page: str, role: str) -> None:
    at = page_direct_test(page, role)
    text = page_text(at)
    assert "No access" in text
    assert not at.dataframe and not at.button and not at.get("plotly_chart")
    assert not at.exception


def test_every_refusal_is_audited_the_same_way(shell_runtime: Any) -> None:
    """Wrong password, a sign-in without access, an admin page opened without access and a
    privileged action by a non-admin: one row each, result "denied", actor and target set."""
    from sqlalchemy import select

    from db.models import AuditLog
    from services import audit
    from services.auth import AccessDenied

    at = app_test_for(None, "signed_out")
    at.text_input[0].input(ADMIN_EMAIL)
    at.text_input[1].input("wrong")
    at.button[0].click()
    at.run()
    at = app_test_for(None, "signed_out")
    at.text_input[0].input(VIEWER_EMAIL)
    at.text_input[1].input("pw-viewer")
    at.button[0].click()
    at.run()
    direct = page_direct_test("audit", "non_admin")
    direct.run()  # a rerun of the same browser session is not a second refusal
    guarded = next(iter(audit.PRIVILEGED_ACTIONS.items()))
    with pytest.raises(AccessDenied):
        guarded[1](actor=VIEWER_EMAIL, settings=shell_runtime.settings, uow=shell_runtime.uow(),
                   **{name: "x" for name in _other_required(guarded[1])})
    with shell_runtime.uow() as uow:
        rows = [(r.actor, r.action, r.result, r.target) for r in uow.session.execute(
            select(AuditLog).order_by(AuditLog.id)).scalars()]
    assert rows == [
        (ADMIN_EMAIL, "sign_in.failed", "denied", "client:loopback"),
        (VIEWER_EMAIL, "sign_in.no_access", "denied", "client:loopback"),
        (VIEWER_EMAIL, "page.open", "denied", "page:audit"),
        (VIEWER_EMAIL, guarded[0], "denied", rows[3][3]),
    ]


def _other_required(fn: Any) -> list[str]:
    import inspect

    return [name for name, p in inspect.signature(fn).parameters.items()
            if p.default is inspect.Parameter.empty and name not in {"actor", "settings", "uow"}
            and p.kind is not inspect.Parameter.VAR_KEYWORD]


@pytest.mark.parametrize("page", PAGES)
def test_deep_link_signed_out_cannot_switch_to_admin_page(shell_runtime: Any, page: str) -> None:
    at = app_test_for(page, "signed_out")
    text = page_text(at)
    assert "Username" in [f.label for f in at.text_input]
    assert "No access" not in text  # the sign-in page, not a half-rendered admin page


def test_idle_session_is_signed_out(shell_runtime: Any) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO_ROOT

    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=30)
    stale = identity_for(ADMIN_EMAIL)
    at.session_state["identity"] = type(stale)(email=stale.email, signed_in_at=stale.signed_in_at - 4000,
                                               last_seen_at=stale.last_seen_at - 1801)
    at.run()
    assert "identity" not in at.session_state
    assert "without activity" in page_text(at)


def test_sign_out_clears_the_session(shell_runtime: Any) -> None:
    at = app_test_for(None, "admin")
    at.session_state["scratch"] = "something"
    sign_out = [b for b in at.button if b.label == "Sign out"][0]
    sign_out.click()
    at.run()
    assert "identity" not in at.session_state and "scratch" not in at.session_state
    assert "Username" in [f.label for f in at.text_input]


def test_session_past_its_absolute_lifetime_is_signed_out(shell_runtime: Any) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO_ROOT

    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=30)
    fresh = identity_for(ADMIN_EMAIL)
    # Active a minute ago, but signed in 13 hours ago: the 12 h lifetime ends it.
    at.session_state["identity"] = type(fresh)(email=fresh.email, signed_in_at=fresh.signed_in_at - 13 * 3600,
                                               last_seen_at=fresh.last_seen_at - 60)
    at.run()
    assert "identity" not in at.session_state
    assert "maximum length" in page_text(at)
