"""Production sign-in (`st.login`, OIDC) in a real browser against a local OpenID provider the
test starts (oauth2-mock-server from npm, tests/tools/): a verified admin email gets in, an
unverified one and one outside ADMIN_EMAIL_DOMAIN (a lookalike suffix) see only "No access",
and every outcome is an audit row. Skipped when node/npm are missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import _free_port, wait_until_idle

TOOLS = REPO_ROOT / "tests" / "tools"


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} not up in {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def oidc_console(tmp_path: Path, migrated_sqlite_url: str, browser: Any) -> Iterator[dict[str, Any]]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed; the OIDC browser test needs them for its local OpenID provider")
    if not (TOOLS / "node_modules" / "oauth2-mock-server").exists():
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOLS, capture_output=True,
                                   timeout=300, check=False)
        if installed.returncode != 0:
            pytest.skip(f"npm ci in tests/tools failed: {installed.stderr.decode()[-500:]}")
    provider_port, console_port = _free_port(), _free_port()
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"email": "nobody@example.com", "email_verified": False}))
    provider_log = tmp_path / "provider.log"
    with open(provider_log, "wb") as log:
        provider = subprocess.Popen([node, str(TOOLS / "oidc_provider.mjs"), str(provider_port)], cwd=TOOLS,
                                    env={**os.environ, "OIDC_CLAIMS_FILE": str(claims)}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    issuer = f"http://127.0.0.1:{provider_port}"
    console_url = f"http://127.0.0.1:{console_port}"
    home = tmp_path / "console"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "{console_url}/oauth2callback"\n'
        'cookie_secret = "a-test-cookie-secret-of-some-length-0123456789"\n'
        'client_id = "billing-ops"\nclient_secret = "billing-ops-secret"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
    )
    env = {**os.environ, "DATABASE_URL": migrated_sqlite_url, "ADMIN_EMAIL_DOMAIN": "example.com",
           "STRIPE_API_KEY": "sk_test_oidc", "STRIPE_API_BASE": "http://127.0.0.1:9", "STRIPE_MAX_RETRIES": "0",
           "AUTH_CREDENTIALS_FILE": str(home / "no-credentials.yaml")}
    console_log = tmp_path / "console.log"
    with open(console_log, "wb") as log:
        console = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "console_server.py"), "--server.port",
             str(console_port), "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(f"{issuer}/.well-known/openid-configuration", provider, provider_log)
        _wait(f"{console_url}/_stcore/health", console, console_log)
        yield {"url": console_url, "claims": claims, "database_url": migrated_sqlite_url, "log": console_log}
    finally:
        _stop(console)
        _stop(provider)


def _admin_sign_ins(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(text("select count(*) from audit_log where actor = 'ada@example.com' "
                                  "and action = 'sign_in.succeeded'")).scalar_one()
    engine.dispose()
    return int(count)


def _sign_in_with_provider(browser: Any, console: dict[str, Any], claims: dict[str, Any]) -> Any:
    console["claims"].write_text(json.dumps(claims))
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(console["url"])
    page.get_by_role("button", name="Sign in").click()  # st.login: off to the provider and back
    page.wait_for_selector("[data-testid='stSidebarNav'], h1:has-text('No access')", timeout=90_000)
    wait_until_idle(page)
    return page


def test_oidc_sign_in_gates_on_verified_email_and_domain(oidc_console: dict[str, Any], browser: Any) -> None:
    admin = _sign_in_with_provider(browser, oidc_console,
                                   {"email": "ada@example.com", "email_verified": True, "name": "Ada"})
    assert admin.locator("h1").first.inner_text() == "Disputes", oidc_console["log"].read_text()[-2000:]
    assert "Signed in as ada" in admin.locator("[data-testid='stSidebar']").inner_text()
    admin.context.close()

    unverified = _sign_in_with_provider(browser, oidc_console, {"email": "ada@example.com", "email_verified": False})
    body = unverified.locator("[data-testid='stMain']").inner_text()
    assert "No access" in body and "has not verified" in body
    assert unverified.locator("[data-testid='stSidebarNav']").count() == 0
    unverified.context.close()

    lookalike = _sign_in_with_provider(browser, oidc_console,
                                       {"email": "mallory@example.com.evil.io", "email_verified": True})
    assert "No access" in lookalike.locator("[data-testid='stMain']").inner_text()
    assert lookalike.locator("[data-testid='stSidebarNav']").count() == 0
    lookalike.context.close()

    # An ID token issued over 12 hours ago (Streamlit's cookie would still say signed in): signed out.
    before = _admin_sign_ins(oidc_console["database_url"])
    stale = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = stale.new_page()
    oidc_console["claims"].write_text(json.dumps({"email": "ada@example.com", "email_verified": True,
                                                  "iat": int(time.time()) - 12 * 3600 - 60}))
    page.goto(oidc_console["url"])
    page.get_by_role("button", name="Sign in").click()
    # Back from the provider once the console has recorded the sign-in (under load the page may
    # still show the first "Sign in" button before the redirect even starts).
    deadline = time.monotonic() + 90
    while _admin_sign_ins(oidc_console["database_url"]) <= before and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    page.wait_for_selector("button:has-text('Sign in')", timeout=90_000)
    wait_until_idle(page)
    assert page.locator("[data-testid='stSidebarNav']").count() == 0
    assert "Disputes" not in page.locator("[data-testid='stMain']").inner_text()
    stale.close()
    assert _admin_sign_ins(oidc_console["database_url"]) > before  # accepted by the provider flow, then ended

    engine = create_engine(oidc_console["database_url"])
    with engine.connect() as conn:
        rows = [(r.actor, r.action, r.result, json.loads(r.details) if isinstance(r.details, str) else r.details)
                for r in conn.execute(text("select actor, action, result, details from audit_log "
                                           "where action like 'sign_in.%' order by id"))]
    engine.dispose()
    firsts: dict[tuple[str, str], Any] = {}
    for actor, action, result, details in rows:
        firsts.setdefault((actor, action), (result, details))
    assert firsts[("ada@example.com", "sign_in.succeeded")][0] == "ok"
    assert firsts[("ada@example.com", "sign_in.no_access")] == (
        "denied", {"client": "loopback", "method": "oidc", "reason": "email not verified"})
    assert firsts[("mallory@example.com.evil.io", "sign_in.no_access")][0] == "denied"
