"""No way in without a password (issue 16, item 1; issue 17, point 5).

Only the console's own session cookie is honoured: `<random id>.<HMAC-SHA256 under
cookie.key>` whose server-side record is live (not revoked, within 30 min idle and
12 h in all). A streamlit-authenticator re-auth cookie (a HS256 JWT of {username,
exp_date} signed with the cookie key) is forged here with every key an attacker
could know (the old hard-coded fallback, the library's default, empty, the cookie
name, the demo's passwords) and even with the real key, under every cookie name
including the session cookie's: none signs anybody in. Our own format signed with a
wrong key, an expired, a revoked (signed-out) and an unknown session are refused and
audited. A credentials file without a real key refuses start-up with one line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import yaml
from click.testing import CliRunner

from demo import DEMO_USERS, write_credentials_file
from services import web_sessions
from tests.conftest import ADMIN_EMAIL, REPO_ROOT, offline_runtime, page_text

MIN_COOKIE_KEY_BYTES = 32  # the floor (services.sign_in.MIN_COOKIE_KEY_BYTES)
REAL_KEY = "k" * 8 + "Zq3v9-real-secret-key-for-tests_0123456789"
COOKIE_NAME = "billing_ops"
SESSION_COOKIE = web_sessions.COOKIE_NAME
KNOWN_KEYS = [
    "billing-ops-cookie-key",  # the old hard-coded fallback
    "some_key",  # streamlit-authenticator's default
    "",
    COOKIE_NAME,
    "billing_ops_demo",
    "demo-ops",
    *(user["password"] for user in DEMO_USERS.values()),
    REAL_KEY,  # even the real key: the console never accepts a re-auth cookie
]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forge(key: str, *, username: str = ADMIN_EMAIL, exp_date: float | None = None) -> str:
    """A HS256 JWT by hand: PyJWT refuses to sign with an empty key, an attacker does not."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"username": username, "exp_date": exp_date or time.time() + 86_400}).encode())
    signature = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{_b64(signature)}"
    if key:  # the hand-made token is exactly what PyJWT would accept for this key
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert jwt.decode(token, key, algorithms=["HS256"])["username"] == username
    return token


def _credentials(path: Path, *, cookie: dict[str, Any] | None) -> Path:
    write_credentials_file(path, {ADMIN_EMAIL: {"name": "Ada", "password": "pw-admin-long"}})
    config = yaml.safe_load(path.read_text())
    if cookie is None:
        config.pop("cookie")
    else:
        config["cookie"] = cookie
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def console(migrated_sqlite_url: str, tmp_path: Path) -> Iterator[Any]:
    from services.runtime import set_runtime

    def install(credentials: Path) -> Any:
        return offline_runtime(migrated_sqlite_url, credentials, api_key="sk_test_cookie")

    yield install
    set_runtime(None)


def _run_with_cookies(monkeypatch: pytest.MonkeyPatch, cookies: dict[str, str]) -> Any:
    """The console as a browser that sends `cookies` with its first request."""
    import streamlit.runtime.context as context
    from streamlit.testing.v1 import AppTest

    client = SimpleNamespace(cookies=cookies, headers={}, remote_ip="203.0.113.7", locale=None, url=None,
                             is_embedded=False, timezone=None, timezone_offset=None)
    monkeypatch.setattr(context, "_get_client_context", lambda: client)
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=30)
    at.run()
    at.run()  # a second run, as after the library's own st.rerun()
    return at


@pytest.mark.parametrize("key", KNOWN_KEYS)
@pytest.mark.parametrize("section", ["no cookie section", "real key"])
def test_forged_cookie_never_signs_in(console: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      key: str, section: str) -> None:
    cookie = None if section == "no cookie section" else {"name": COOKIE_NAME, "key": REAL_KEY, "expiry_days": 0}
    console(_credentials(tmp_path / "credentials.yaml", cookie=cookie))
    forged = _forge(key)
    at = _run_with_cookies(monkeypatch, {COOKIE_NAME: forged, "billing_ops_demo": forged, SESSION_COOKIE: forged})
    assert "identity" not in at.session_state
    text = page_text(at)
    assert "Disputes" not in text and "Webhooks" not in text
    assert REAL_KEY not in text


@pytest.mark.parametrize("exp_date", [1.0, time.time() - 60], ids=["epoch", "a-minute-ago"])
def test_expired_or_replayed_cookie_never_signs_in(console: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   exp_date: float) -> None:
    console(_credentials(tmp_path / "credentials.yaml",
                         cookie={"name": COOKIE_NAME, "key": REAL_KEY, "expiry_days": 0}))
    for cookie in (_forge(REAL_KEY, exp_date=exp_date), _forge(REAL_KEY)):  # expired, then replayed valid-looking
        at = _run_with_cookies(monkeypatch, {COOKIE_NAME: cookie})
        assert "identity" not in at.session_state


def _session_cookie(runtime: Any, *, key: str = REAL_KEY, age: float = 0.0, idle: float = 0.0,
                    revoke: bool = False) -> str:
    """A session made through the service with its clock moved back, as our route would sign it."""
    now = time.time()
    session_id, _token = web_sessions.create_session(runtime.uow(), runtime.settings, email=ADMIN_EMAIL,
                                                     name="Ada", method="password", now=now - age)
    moment = now - age
    while idle and moment + 25 * 60 < now - idle:  # active every 25 minutes, then `idle` seconds of nothing
        moment += 25 * 60
        record, _reason = web_sessions.check(runtime.uow(), runtime.settings, session_id, now=moment, touch=True)
        assert record is not None
    if idle:
        record, _reason = web_sessions.check(runtime.uow(), runtime.settings, session_id, now=now - idle, touch=True)
        assert record is not None
    if revoke:
        web_sessions.revoke(runtime.uow(), session_id)
    return web_sessions.sign(session_id, key)


def _session_refusals(runtime: Any) -> list[tuple[str, str, str]]:
    from sqlalchemy import select

    from db.models import AuditLog

    with runtime.uow() as uow:
        rows = uow.session.execute(select(AuditLog).where(AuditLog.action == "sign_in.session_refused")).scalars()
        return [(row.actor, row.result, row.details["reason"]) for row in rows]


def test_our_signed_live_session_cookie_signs_in(console: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = console(_credentials(tmp_path / "credentials.yaml",
                                   cookie={"name": COOKIE_NAME, "key": REAL_KEY, "expiry_days": 0}))
    at = _run_with_cookies(monkeypatch, {SESSION_COOKIE: _session_cookie(runtime, age=11 * 3600, idle=20 * 60)})
    identity = at.session_state["identity"]
    assert identity.email == ADMIN_EMAIL and identity.session_id
    assert "Disputes" in page_text(at)
    assert _session_refusals(runtime) == []


@pytest.mark.parametrize(("how", "reason"), [
    ("wrong key", "forged"), ("tampered id", "forged"), ("lifetime", "lifetime"), ("idle", "idle"),
    ("signed out", "revoked"), ("unknown", "unknown"),
])
def test_forged_expired_or_revoked_session_cookie_is_refused(console: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             how: str, reason: str) -> None:
    runtime = console(_credentials(tmp_path / "credentials.yaml",
                                   cookie={"name": COOKIE_NAME, "key": REAL_KEY, "expiry_days": 0}))
    if how == "wrong key":
        cookie = _session_cookie(runtime, key="w" * 43)
    elif how == "tampered id":
        good = _session_cookie(runtime)
        cookie = ("A" if good[0] != "A" else "B") + good[1:]
    elif how == "lifetime":
        cookie = _session_cookie(runtime, age=12 * 3600 + 5)
    elif how == "idle":
        cookie = _session_cookie(runtime, age=30 * 60 + 5)
    elif how == "signed out":
        cookie = _session_cookie(runtime, revoke=True)
    else:
        import secrets

        cookie = web_sessions.sign(secrets.token_urlsafe(32), REAL_KEY)
    at = _run_with_cookies(monkeypatch, {SESSION_COOKIE: cookie})
    assert "identity" not in at.session_state
    text = page_text(at)
    assert "Disputes" not in text and at.text_input  # the sign-in form
    refusals = _session_refusals(runtime)
    assert [r[1:] for r in refusals] == [("denied", reason)]  # audited once, though the script ran twice
    assert refusals[0][0] == (ADMIN_EMAIL if reason in {"lifetime", "idle", "revoked"} else "anonymous")
    assert cookie not in str(refusals)


@pytest.mark.parametrize(
    "cookie",
    [None, {"name": COOKIE_NAME}, {"name": COOKIE_NAME, "key": ""}, {"name": COOKIE_NAME, "key": "short-key"},
     {"name": COOKIE_NAME, "key": "x" * (MIN_COOKIE_KEY_BYTES - 1)}, {"name": COOKIE_NAME, "key": 12345}],
)
def test_missing_or_short_cookie_key_refuses_start_up(console: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      cookie: dict[str, Any] | None) -> None:
    from services.config import SettingsError
    from services.sign_in import load_credentials

    credentials = _credentials(tmp_path / "credentials.yaml", cookie=cookie)
    runtime = console(credentials)
    with pytest.raises(SettingsError) as raised:
        load_credentials(runtime.settings)
    message = str(raised.value)
    assert "\n" not in message and "AUTH_CREDENTIALS_FILE" in message and "cookie.key" in message
    assert "short-key" not in message and "x" * 8 not in message

    # The console itself shows the same line instead of a sign-in form, and nobody gets in.
    at = _run_with_cookies(monkeypatch, {COOKIE_NAME: _forge("billing-ops-cookie-key")})
    assert "identity" not in at.session_state
    assert any("cookie.key" in error.value for error in at.error)
    assert not at.text_input

    # `billing-ops run` stops before starting anything, with one line and exit code 2.
    import cli
    import demo as demo_module

    started: list[bool] = []

    def fake_console(**_kw: Any) -> int:
        started.append(True)
        return 0

    monkeypatch.setattr(demo_module, "run_console", fake_console)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["run"], env={
        "DATABASE_URL": runtime.settings.database_url, "AUTH_CREDENTIALS_FILE": str(credentials),
        "STRIPE_API_KEY": "sk_test_cookie",
    })
    assert result.exit_code == 2, result.output
    assert not started
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "cookie.key" in lines[0] and "Traceback" not in result.output


def test_demo_generates_a_random_key_of_its_own(tmp_path: Path) -> None:
    keys = []
    for name in ("one.yaml", "two.yaml"):
        write_credentials_file(tmp_path / name, DEMO_USERS)
        keys.append(yaml.safe_load((tmp_path / name).read_text())["cookie"]["key"])
    assert keys[0] != keys[1]
    assert all(len(key.encode()) >= MIN_COOKIE_KEY_BYTES for key in keys)
    from services import sign_in

    assert sign_in.MIN_COOKIE_KEY_BYTES == MIN_COOKIE_KEY_BYTES
    assert "billing-ops-cookie-key" not in (REPO_ROOT / "app_pages" / "_shared.py").read_text()
