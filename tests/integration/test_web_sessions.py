"""The browser session: cookie signing, the server-side store (SQLite and PostgreSQL) with an
injected clock, and the /auth routes' one-time handover and CSRF checks."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from db.models import AppSetting, AuditLog
from demo import write_credentials_file
from services import web_sessions
from services.config import load_settings
from services.runtime import Runtime, set_runtime

KEY = "s" * 8 + "-a-real-cookie-key-for-the-session-tests-0123"
T0 = 1_800_000_000.0


def _runtime(url: str, tmp_path: Path) -> Runtime:
    credentials = tmp_path / "credentials.yaml"
    write_credentials_file(credentials, {"ada@example.com": {"name": "Ada", "password": "pw-admin-long"}})
    config = yaml.safe_load(credentials.read_text())
    config["cookie"]["key"] = KEY
    credentials.write_text(yaml.safe_dump(config))
    return Runtime(load_settings({"DATABASE_URL": url, "ADMIN_EMAILS": "ada@example.com",
                                  "STRIPE_API_KEY": "sk_test_sessions", "AUTH_CREDENTIALS_FILE": str(credentials)},
                                 env_file=None))


def test_sign_and_unsign() -> None:
    session_id = secrets.token_urlsafe(32)
    value = web_sessions.sign(session_id, KEY)
    assert web_sessions.unsign(value, KEY) == (session_id, None)
    assert web_sessions.unsign(value, KEY + "x") == (None, "forged")
    tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
    assert web_sessions.unsign(tampered, KEY) == (None, "forged")
    for bad in ("", "x", session_id, f"{session_id}.", f"{session_id}.{'a' * 43}.x", "a.b", None):
        assert web_sessions.unsign(bad, KEY)[0] is None
    header = web_sessions.cookie_header(value, max_age=60, secure=True)
    assert {"HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=60"} <= set(header.split("; "))
    assert "Secure" not in web_sessions.cookie_header(value, max_age=60, secure=False)


def test_store_limits_touch_and_revoke(migrated_url: str, tmp_path: Path) -> None:
    rt = _runtime(migrated_url, tmp_path)
    settings = rt.settings
    session_id, token = web_sessions.create_session(rt.uow(), settings, email="ada@example.com", name="Ada",
                                                    method="password", now=T0)
    with rt.uow() as uow:  # only a hash of the id is stored, never the id or the token
        keys = [row.key for row in uow.session.execute(select(AppSetting)).scalars()]
        assert not any(session_id in k or token in k for k in keys) and len(keys) == 2
    record, reason = web_sessions.check(rt.uow(), settings, session_id, now=T0 + 29 * 60)
    assert record is not None and reason is None and record.last_seen == T0 + 29 * 60
    # Activity every 29 minutes keeps it alive up to, never past, 12 hours.
    moment = T0 + 29 * 60
    while moment + 29 * 60 <= T0 + 12 * 3600:
        moment += 29 * 60
        assert web_sessions.check(rt.uow(), settings, session_id, now=moment)[0] is not None
    assert web_sessions.check(rt.uow(), settings, session_id, now=T0 + 12 * 3600 + 1) == (None, "lifetime")
    # Idle: 30 minutes without a touch (a fragment's check does not touch).
    other, _ = web_sessions.create_session(rt.uow(), settings, email="ada@example.com", name=None,
                                           method="password", now=T0)
    assert web_sessions.check(rt.uow(), settings, other, now=T0 + 20 * 60, touch=False)[0] is not None
    assert web_sessions.check(rt.uow(), settings, other, now=T0 + 30 * 60 + 1) == (None, "idle")
    # Revoked: refused from then on, whatever the clock.
    third, _ = web_sessions.create_session(rt.uow(), settings, email="ada@example.com", name=None,
                                           method="password", now=T0)
    assert web_sessions.revoke(rt.uow(), third, now=T0 + 1)
    assert web_sessions.check(rt.uow(), settings, third, now=T0 + 2) == (None, "revoked")
    assert web_sessions.peek_email(rt.uow(), third) == "ada@example.com"
    assert web_sessions.check(rt.uow(), settings, secrets.token_urlsafe(32), now=T0) == (None, "unknown")


def test_handover_is_single_use_and_short_lived(migrated_url: str, tmp_path: Path) -> None:
    rt = _runtime(migrated_url, tmp_path)
    session_id, token = web_sessions.create_session(rt.uow(), rt.settings, email="ada@example.com", name="Ada",
                                                    method="password", now=T0)
    assert web_sessions.handover_pending(rt.uow(), token, now=T0 + 1)
    consumed = web_sessions.consume_handover(rt.uow(), rt.settings, token, now=T0 + 1)
    assert consumed is not None and consumed[0] == session_id
    assert web_sessions.consume_handover(rt.uow(), rt.settings, token, now=T0 + 2) is None
    assert not web_sessions.handover_pending(rt.uow(), token, now=T0 + 2)
    _, late = web_sessions.create_session(rt.uow(), rt.settings, email="ada@example.com", name="Ada",
                                          method="password", now=T0)
    assert web_sessions.consume_handover(rt.uow(), rt.settings, late, now=T0 + 61) is None


@pytest.fixture
def client(migrated_sqlite_url: str, tmp_path: Path) -> Any:
    from console_routes import ROUTES

    rt = _runtime(migrated_sqlite_url, tmp_path)
    set_runtime(rt)
    yield rt, TestClient(Starlette(routes=ROUTES), base_url="http://console.test")
    set_runtime(None)


def _refusal_reasons(rt: Runtime) -> list[str]:
    with rt.uow() as uow:
        rows = uow.session.execute(select(AuditLog).where(AuditLog.action.like("sign_in.%"))).scalars()
        return [f"{row.action}:{row.result}:{row.details['reason']}" for row in rows]


def test_session_route_sets_the_cookie_once_for_the_own_origin(client: Any) -> None:
    rt, http = client
    session_id, token = web_sessions.create_session(rt.uow(), rt.settings, email="ada@example.com", name="Ada",
                                                    method="password")
    same = {"Origin": "http://console.test"}
    # Cross-site: another origin, no Origin at all, or Sec-Fetch-Site cross-site; the token survives them.
    for headers in ({"Origin": "https://evil.example"}, {}, {**same, "Sec-Fetch-Site": "cross-site"}):
        response = http.post("/auth/session", data={"token": token}, headers=headers)
        assert response.status_code == 403 and "set-cookie" not in response.headers
    response = http.post("/auth/session", data={"token": token}, headers=same)
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert web_sessions.unsign(value, KEY) == (session_id, None)
    again = http.post("/auth/session", data={"token": token}, headers=same)  # replayed token
    assert again.status_code == 403 and "set-cookie" not in again.headers
    # The first cross-origin refusal is audited at once; the two repeats from the same client are
    # counted and written as one row when the window closes (here: flushed).
    assert _refusal_reasons(rt) == ["sign_in.session_refused:denied:cross-origin handover",
                                    "sign_in.session_refused:denied:unknown, used or expired handover token"]
    assert rt.refusal_audit.flush(everything=True) == 2
    with rt.uow() as uow:
        repeats = [row.details for row in uow.session.execute(select(AuditLog).where(
            AuditLog.action == "sign_in.session_refused")).scalars() if "repeats" in row.details]
    assert [(d["reason"], d["repeats"]) for d in repeats] == [("cross-origin handover", 2)]

    # Sign-out revokes the session and deletes the cookie; a cross-site sign-out does nothing.
    http.cookies.set(web_sessions.COOKIE_NAME, value)
    assert http.post("/auth/sign-out", headers={"Origin": "https://evil.example"}).status_code == 403
    assert web_sessions.check(rt.uow(), rt.settings, session_id, touch=False)[0] is not None
    out = http.post("/auth/sign-out", headers=same)
    assert out.status_code == 204 and "Max-Age=0" in out.headers["set-cookie"]
    assert web_sessions.check(rt.uow(), rt.settings, session_id, touch=False) == (None, "revoked")
