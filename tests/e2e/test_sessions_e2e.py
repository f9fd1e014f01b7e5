"""Sessions in a real browser against `billing-ops demo` (issue 17, point 5): a refresh, a new tab
and a shared link keep the person signed in on the linked page; after sign-out, the old cookie
replayed by hand is refused, and so are cookies whose session is past 12 h or 30 min idle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy import create_engine, text

from services import web_sessions
from services.dispute_queue import OPEN_STATUSES
from tests.e2e.conftest import open_page, sign_in, wait_until_idle

COOKIE = web_sessions.COOKIE_NAME


def _session_cookie(context: Any, timeout_s: float = 30) -> dict[str, Any]:
    """The cookie /auth/session set after the sign-in handed its one-time token over."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [c for c in context.cookies() if c["name"] == COOKIE]
        if found:
            return dict(found[0])
        time.sleep(0.2)
    raise AssertionError("the session cookie was never set")


def _signed_in_on(page: Any, heading: str) -> None:
    page.wait_for_selector(f"h1:has-text('{heading}')", timeout=120_000)
    wait_until_idle(page)
    assert "Signed in as ops" in page.locator("[data-testid='stSidebar']").inner_text()


def _sign_in_form_shown(page: Any) -> None:
    page.wait_for_selector("button:has-text('Login')", timeout=60_000)
    wait_until_idle(page)
    assert page.locator("[data-testid='stSidebarNav']").count() == 0


def _demo_env(data_dir: Path) -> dict[str, str]:
    env = {}
    for line in (data_dir / "demo.env").read_text().splitlines():
        name, _, value = line.partition("=")
        env[name] = value.strip("'")
    return env


def test_refresh_new_tab_shared_link_and_sign_out(demo_server: Any, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Webhooks")
    cookie = _session_cookie(context)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie").find(COOKIE) == -1  # HttpOnly: the page cannot read it

    page.reload()  # still signed in, on the same page
    _signed_in_on(page, "Webhooks")
    assert urlsplit(page.url).path.endswith("/webhooks")  # the log keeps its selected event in the query

    tab = context.new_page()  # a new tab with a page URL
    tab.goto(f"{demo_server.console_url}/audit")
    _signed_in_on(tab, "Audit log")

    # A shared link to a dispute outside the default filters (closed), opened signed out: sign in, see it.
    engine = create_engine(f"sqlite:///{demo_server.data_dir}/billing_ops.db")
    with engine.connect() as conn:
        open_statuses = ", ".join(f"'{status}'" for status in OPEN_STATUSES)
        target = conn.execute(text(
            f"select id from disputes where status not in ({open_statuses}) order by id limit 1")).scalar()
    engine.dispose()
    assert target, "the demo has a closed dispute"
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    shared = other.new_page()
    shared.goto(f"{demo_server.console_url}/disputes?dispute={target}")
    shared.get_by_role("textbox", name="Username").fill(demo_server.admin_email)
    shared.get_by_role("textbox", name="Password").fill(demo_server.admin_password)
    shared.get_by_role("button", name="Login").click()
    _signed_in_on(shared, "Disputes")
    assert target in (shared.get_by_role("link", name="Open in Stripe").get_attribute("href") or "")
    assert f"dispute={target}" in shared.url
    shared.reload()  # and the link survives a refresh too
    _signed_in_on(shared, "Disputes")
    assert target in (shared.get_by_role("link", name="Open in Stripe").get_attribute("href") or "")
    other.close()

    # Sign out: the next load is signed out, and the old cookie replayed by hand is refused.
    page.get_by_role("button", name="Sign out").click()
    _sign_in_form_shown(page)
    page.reload()
    _sign_in_form_shown(page)
    replay = browser.new_context()
    replay.add_cookies([{"name": COOKIE, "value": cookie["value"], "url": demo_server.console_url}])
    replayed = replay.new_page()
    replayed.goto(f"{demo_server.console_url}/webhooks")
    _sign_in_form_shown(replayed)
    replay.close()
    tab.reload()  # the other tab shared the session: it is signed out as well
    _sign_in_form_shown(tab)
    context.close()

    with create_engine(f"sqlite:///{demo_server.data_dir}/billing_ops.db").connect() as conn:
        reasons = conn.execute(text("select result, details from audit_log where action = 'sign_in.session_refused' "
                                    "and actor = :who"), {"who": demo_server.admin_email}).all()
    assert any(r.result == "denied" and "revoked" in str(r.details) for r in reasons)


def test_expired_session_cookies_are_refused(demo_server: Any, browser: Any) -> None:
    from services.config import load_settings
    from services.runtime import Runtime

    env = _demo_env(demo_server.data_dir)
    runtime = Runtime(load_settings(env, env_file=None))
    key = yaml.safe_load(Path(env["AUTH_CREDENTIALS_FILE"]).read_text())["cookie"]["key"]
    now = time.time()
    cases = {
        "lifetime": now - 12 * 3600 - 60,  # issued over 12 h ago
        "idle": now - 31 * 60,  # issued (and last seen) 31 minutes ago
    }
    for reason, issued in cases.items():
        session_id, _token = web_sessions.create_session(runtime.uow(), runtime.settings,
                                                         email=demo_server.admin_email, name="Olivia Ops",
                                                         method="password", now=issued)
        context = browser.new_context()
        context.add_cookies([{"name": COOKIE, "value": web_sessions.sign(session_id, key),
                              "url": demo_server.console_url}])
        page = context.new_page()
        page.goto(f"{demo_server.console_url}/webhooks")
        _sign_in_form_shown(page)
        expected = web_sessions.REFUSAL_MESSAGES[reason]
        assert expected in page.locator("[data-testid='stMain']").inner_text()
        context.close()
