"""Browser sessions that survive a refresh, a new tab or a shared link.

The browser holds one cookie, `billing_ops_session`, whose value is a random
session id and its HMAC-SHA256 under the credentials file's `cookie.key`
(`<id>.<mac>`). The cookie is HttpOnly and SameSite=Strict (Secure over https)
and is set only by the console's own route `POST /auth/session`
(console_server.py), because a Streamlit script cannot set an HttpOnly cookie:
after the password check the script creates the session here and hands the
browser a one-time token (60 s, single use) that the route exchanges for the
cookie. The session record (email, issued_at, last_seen, revoked) lives in the
database, one `app_settings` row per session keyed by a hash of its id (never
the id itself), so every console replica on the database agrees and sign-out
revokes it everywhere at once. A record is honoured for 30 minutes without
activity and 12 hours in all (SESSION_IDLE_TIMEOUT_SECONDS,
SESSION_MAX_LIFETIME_SECONDS), exactly like the in-tab session.

Every function takes `now` (epoch seconds) so tests can move the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from db.repositories import settings as app_settings
from db.session import UnitOfWork
from services.config import Settings

COOKIE_NAME = "billing_ops_session"
HANDOVER_SECONDS = 60
# last_seen is written at most this often (a rerun is activity, but not every rerun needs a write).
TOUCH_INTERVAL_SECONDS = 15
_SESSION_PREFIX = "web_session:"
_HANDOVER_PREFIX = "web_handover:"
_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_MAC = re.compile(r"^[A-Za-z0-9_-]{43}$")

Refusal = Literal["malformed", "forged", "unknown", "revoked", "idle", "lifetime"]


@dataclass(frozen=True)
class SessionRecord:
    email: str
    name: str | None
    method: str
    issued_at: float
    last_seen: float
    revoked_at: float | None = None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(session_id: str, key: str) -> str:
    return _b64(hmac.new(key.encode(), f"billing-ops-session:{session_id}".encode(), hashlib.sha256).digest())


def sign(session_id: str, key: str) -> str:
    """The cookie value for a session id."""
    return f"{session_id}.{_mac(session_id, key)}"


def unsign(value: str | None, key: str) -> tuple[str | None, Refusal | None]:
    """The session id of a cookie signed with `key`, or why it is not one."""
    if not value or not isinstance(value, str) or value.count(".") != 1:
        return None, "malformed"
    session_id, mac = value.split(".")
    if not _ID.match(session_id) or not _MAC.match(mac):
        return None, "malformed"
    if not hmac.compare_digest(mac, _mac(session_id, key)):
        return None, "forged"
    return session_id, None


def _key(prefix: str, secret: str) -> str:
    return prefix + hashlib.sha256(secret.encode()).hexdigest()[:48]


def _record(value: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        email=str(value["email"]), name=value.get("name"), method=str(value.get("method") or "password"),
        issued_at=float(value["issued_at"]), last_seen=float(value["last_seen"]),
        revoked_at=float(value["revoked_at"]) if value.get("revoked_at") is not None else None,
    )


def _over(record: SessionRecord, settings: Settings, now: float) -> Refusal | None:
    if record.revoked_at is not None:
        return "revoked"
    if now - record.issued_at > settings.session_max_lifetime_seconds:
        return "lifetime"
    if now - record.last_seen > settings.session_idle_timeout_seconds:
        return "idle"
    return None


def create_session(uow: UnitOfWork, settings: Settings, *, email: str, name: str | None, method: str,
                   now: float | None = None) -> tuple[str, str]:
    """A new session and its one-time handover token: (session_id, token). Prunes ended sessions."""
    now = time.time() if now is None else now
    session_id, token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with uow:
        _prune(uow, settings, now)
        app_settings.add(uow, _key(_SESSION_PREFIX, session_id), {
            "email": email, "name": name, "method": method, "issued_at": now, "last_seen": now,
            "revoked_at": None,
        })
        app_settings.add(uow, _key(_HANDOVER_PREFIX, token),
                         {"session_id": session_id, "expires_at": now + HANDOVER_SECONDS})
        uow.commit()
    return session_id, token


def _prune(uow: UnitOfWork, settings: Settings, now: float) -> None:
    for row in app_settings.with_prefixes(uow, _SESSION_PREFIX, _HANDOVER_PREFIX):
        value = row.value or {}
        if row.key.startswith(_HANDOVER_PREFIX):
            ended = float(value.get("expires_at", 0)) < now
        else:
            try:
                record = _record(value)
            except (KeyError, TypeError, ValueError):
                ended = True
            else:  # revoked ones are kept for a lifetime so a replayed cookie says "revoked"
                ended = now - record.issued_at > settings.session_max_lifetime_seconds
        if ended:
            app_settings.remove(uow, row)


def consume_handover(uow: UnitOfWork, settings: Settings, token: str, *,
                     now: float | None = None) -> tuple[str, SessionRecord] | None:
    """Exchange a one-time token for its session (once, within 60 s); None otherwise."""
    now = time.time() if now is None else now
    if not token or len(token) > 100:
        return None
    with uow:
        key = _key(_HANDOVER_PREFIX, token)
        row = app_settings.get(uow, key)
        if row is None:
            return None
        value = dict(row.value or {})
        # A conditional delete: of two racing requests only one removes the row.
        deleted = app_settings.delete_key(uow, key)
        uow.commit()
    if not deleted or float(value.get("expires_at", 0)) < now:
        return None
    session_id = str(value.get("session_id") or "")
    record, _reason = check(uow, settings, session_id, now=now, touch=False)
    return (session_id, record) if record is not None else None


def check(uow: UnitOfWork, settings: Settings, session_id: str, *, now: float | None = None,
          touch: bool = True) -> tuple[SessionRecord | None, Refusal | None]:
    """The live session record, or why it is refused; `touch` counts this as activity."""
    now = time.time() if now is None else now
    if not _ID.match(session_id or ""):
        return None, "malformed"
    with uow:
        row = app_settings.get(uow, _key(_SESSION_PREFIX, session_id))
        if row is None:
            return None, "unknown"
        try:
            record = _record(row.value or {})
        except (KeyError, TypeError, ValueError):
            return None, "unknown"
        reason = _over(record, settings, now)
        if reason is not None:
            return None, reason
        if touch and now - record.last_seen >= TOUCH_INTERVAL_SECONDS:
            row.value = {**row.value, "last_seen": now}
            uow.commit()
            record = SessionRecord(record.email, record.name, record.method, record.issued_at, now)
        return record, None


def peek_email(uow: UnitOfWork, session_id: str) -> str | None:
    """Whose session this was (for the audit row of a refused cookie), whatever its state."""
    if not _ID.match(session_id or ""):
        return None
    with uow:
        row = app_settings.get(uow, _key(_SESSION_PREFIX, session_id))
        return str((row.value or {}).get("email")) if row is not None else None


def revoke(uow: UnitOfWork, session_id: str, *, now: float | None = None) -> bool:
    """Sign-out: the session is refused from now on, in every tab and replica."""
    now = time.time() if now is None else now
    if not _ID.match(session_id or ""):
        return False
    with uow:
        row = app_settings.get(uow, _key(_SESSION_PREFIX, session_id))
        if row is None:
            return False
        if (row.value or {}).get("revoked_at") is None:
            row.value = {**row.value, "revoked_at": now}
            uow.commit()
        return True


def cookie_header(value: str, *, max_age: int, secure: bool) -> str:
    """The Set-Cookie value: HttpOnly, SameSite=Strict, Path=/, Secure over https."""
    parts = [f"{COOKIE_NAME}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def handover_pending(uow: UnitOfWork, token: str, *, now: float | None = None) -> bool:
    """Whether the browser has yet to exchange this token (so the page still has to send it)."""
    now = time.time() if now is None else now
    with uow:
        row = app_settings.get(uow, _key(_HANDOVER_PREFIX, token))
        return row is not None and float((row.value or {}).get("expires_at", 0)) >= now


REFUSAL_MESSAGES: dict[str, str] = {
    "idle": "Signed out after a period without activity.",
    "lifetime": "Your session reached its maximum length; please sign in again.",
    "revoked": "You are signed out.",
}
