"""Password sign-in: the credentials file, the password check, lockout and its audit trail.

No streamlit import: the sign-in page passes the typed username, password and
client address and renders the outcome. Lockout state lives in the audit log
itself (one `sign_in.failed` row per wrong password, with the account as actor
and the client as target), so every console replica sees the same count
without a table or a cache of its own.

The credentials file keeps streamlit-authenticator's format
(`credentials.usernames.<name>.{email,name,password}` with bcrypt hashes, plus a
`cookie:` section). `cookie.key` signs the console's own
session cookie (services/web_sessions.py: a random id whose record is kept
server-side); it must be a real secret of at least 32 bytes: no weak or
well-known key may sit in a deployed file.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml

from db.models.base import utcnow
from db.repositories import audit as audit_rows
from db.session import UnitOfWork
from services import audit
from services.auth import is_admin, normalise_email
from services.config import Settings, SettingsError

# Lockout policy (issue 16): this many failures within the window lock the
# account (or the client) for the cool-down, counted from the failure that
# reached the limit.
MAX_FAILED_SIGN_INS = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT_COOL_DOWN = timedelta(minutes=15)

MIN_COOKIE_KEY_BYTES = 32

ACTION_FAILED = "sign_in.failed"
ACTION_LOCKED = "sign_in.locked_out"
ACTION_SIGNED_IN = "sign_in.succeeded"
ACTION_NO_ACCESS = "sign_in.no_access"
# A session cookie that is forged, expired, revoked or unknown, or a refused cookie handover.
ACTION_SESSION_REFUSED = "sign_in.session_refused"
ACTION_SIGN_OUT = "sign_in.sign_out"
ACTION_PAGE_DENIED = "page.open"  # an admin page opened by someone who is not a signed-in admin
# The one vocabulary for refusals: "denied" = this person/client may not (wrong password, no access,
# locked out, a refused cookie, a non-admin calling a privileged action: services.audit.privileged);
# "refused" = an admin's action that the state of things does not allow (services.signoff etc.).

LOCKED_MESSAGE = "Too many failed sign-ins. Sign-in is paused for 15 minutes; try again later."
BAD_CREDENTIALS_MESSAGE = "Email/username or password is incorrect."
NO_EMAIL_MESSAGE = "Your account has no valid email address; ask an admin to fix it."

_FIX = (
    "set cookie.key in the credentials file to a random secret of at least 32 bytes, e.g. "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
# Compared against when the account does not exist, so an unknown name costs as much as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt(rounds=10))


@dataclass(frozen=True)
class Account:
    username: str
    email: str
    name: str | None
    password_hash: str


@dataclass(frozen=True)
class Credentials:
    accounts: tuple[Account, ...]
    cookie_key: str = ""  # signs the session cookie (services.web_sessions)

    def find(self, typed: str) -> Account | None:
        """By username or email, compared the way emails are (NFKC, casefold, ASCII only)."""
        wanted = normalise_email(typed)
        key = wanted if wanted is not None else typed.strip().casefold()
        for account in self.accounts:
            if key in {account.username.strip().casefold(), normalise_email(account.email)}:
                return account
        return None


def load_credentials(settings: Settings) -> Credentials | None:
    """The credentials file, validated; None when there is no file (sign-in not configured).

    Raises SettingsError (one line, no value) when the file is unusable or its
    cookie key is missing or shorter than 32 bytes.
    """
    path = Path(settings.auth_credentials_file)
    if not path.exists():
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        raise SettingsError(
            "AUTH_CREDENTIALS_FILE: the credentials file cannot be read as YAML; fix: see README, Sign-in"
        ) from None
    if not isinstance(config, Mapping):
        raise SettingsError("AUTH_CREDENTIALS_FILE: the credentials file is not a mapping; fix: see README, Sign-in")
    cookie = config.get("cookie")
    key = cookie.get("key") if isinstance(cookie, Mapping) else None
    if not isinstance(key, str) or len(key.encode()) < MIN_COOKIE_KEY_BYTES:
        raise SettingsError(
            f"AUTH_CREDENTIALS_FILE: cookie.key is missing or shorter than {MIN_COOKIE_KEY_BYTES} bytes; fix: {_FIX}"
        )
    section = config.get("credentials")
    users = section.get("usernames") if isinstance(section, Mapping) else None
    if not isinstance(users, Mapping):
        raise SettingsError(
            "AUTH_CREDENTIALS_FILE: no credentials.usernames section; fix: see README, Sign-in"
        )
    accounts = tuple(
        Account(
            username=str(username),
            email=str(user.get("email") or username),
            name=str(user["name"]) if user.get("name") else None,
            password_hash=str(user.get("password") or ""),
        )
        for username, user in users.items()
        if isinstance(user, Mapping)
    )
    return Credentials(accounts, cookie_key=key)


def _password_matches(password: str, password_hash: str | None) -> bool:
    hashed = password_hash.encode() if password_hash else _DUMMY_HASH
    try:
        matched = bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # not a bcrypt hash: never a match (plain-text passwords are not accepted)
        bcrypt.checkpw(password.encode(), _DUMMY_HASH)
        return False
    return matched and bool(password_hash)


@dataclass(frozen=True)
class SignInOutcome:
    status: Literal["signed_in", "no_access", "failed", "locked"]
    email: str | None = None
    name: str | None = None
    message: str | None = None


def account_key(typed: str) -> str:
    """What the lockout counts per: the normalised email, else the typed name casefolded."""
    return (normalise_email(typed) or typed.strip().casefold() or "(empty)")[:320]


def client_address(connection_address: str | None, headers: Mapping[str, str], settings: Settings) -> str | None:
    """The client to count failures for: the connection's address, or, behind a trusted proxy
    (AUTH_CLIENT_ADDRESS_HEADER), the last hop that proxy appended; earlier hops are the client's
    own claim and could be anything."""
    header = settings.auth_client_address_header
    if header:
        value = next((v for k, v in headers.items() if k.lower() == header.lower()), "")
        hops = [hop.strip() for hop in value.split(",") if hop.strip()]
        if hops:
            return hops[-1][:200]
    return connection_address


def client_key(client: str | None) -> str:
    # Streamlit reports loopback connections as None: they are one client, the machine itself.
    return f"client:{client or 'loopback'}"[:255]


def locked_until(failures: list[datetime]) -> datetime | None:
    """When the lock from these failure times ends (None if they never reached the limit)."""
    times = sorted(failures)
    until: datetime | None = None
    for i in range(MAX_FAILED_SIGN_INS - 1, len(times)):
        if times[i] - times[i - MAX_FAILED_SIGN_INS + 1] <= FAILURE_WINDOW:
            end = times[i] + LOCKOUT_COOL_DOWN
            until = end if until is None or end > until else until
    return until


def _failure_times(
    uow: UnitOfWork, *, account: str, client: str, now: datetime
) -> tuple[list[datetime], list[datetime]]:
    since = now - FAILURE_WINDOW - LOCKOUT_COOL_DOWN
    rows = audit_rows.times_of(uow, ACTION_FAILED, since=since, actor=account, target=client)
    return [at for at, actor, _ in rows if actor == account], [at for at, _, target in rows if target == client]


def is_locked(uow: UnitOfWork, *, account: str, client: str, now: datetime) -> bool:
    by_account, by_client = _failure_times(uow, account=account, client=client, now=now)
    return any((until := locked_until(times)) is not None and now < until for times in (by_account, by_client))


def attempt_sign_in(
    uow: UnitOfWork,
    settings: Settings,
    credentials: Credentials,
    *,
    username: str,
    password: str,
    client: str | None,
    now: datetime | None = None,
) -> SignInOutcome:
    """Check lockout, then the password; every outcome leaves one audit row (never the password)."""
    now = utcnow() if now is None else now
    account, target = account_key(username), client_key(client)
    details: dict[str, Any] = {"client": client or "loopback"}
    with uow:
        if is_locked(uow, account=account, client=target, now=now):
            # Refused before the password is even checked, so the right one does not help.
            return _refuse_locked(uow, account, target, details)
    # bcrypt runs outside any transaction so a slow hash never holds the database's write lock.
    found = credentials.find(username)
    matched = _password_matches(password, found.password_hash if found else None) and found is not None
    with uow:
        if not matched:
            audit.record(uow, actor=account, action=ACTION_FAILED, target=target, result="denied",
                         details={**details, "known_account": found is not None})
            uow.commit()
            return SignInOutcome("failed", message=BAD_CREDENTIALS_MESSAGE)
        assert found is not None
        # Checked again inside the write: guesses racing in parallel cannot sign in past a lock.
        if is_locked(uow, account=account, client=target, now=now):
            return _refuse_locked(uow, account, target, details)
        email = normalise_email(found.email)
        if email is None:
            audit.record(uow, actor=account, action=ACTION_NO_ACCESS, target=target, result="denied",
                         details={**details, "reason": "no valid email"})
            uow.commit()
            return SignInOutcome("no_access", message=NO_EMAIL_MESSAGE)
        admin = is_admin(email, settings)
        audit.record(uow, actor=email, action=ACTION_SIGNED_IN if admin else ACTION_NO_ACCESS, target=target,
                     result="ok" if admin else "denied", details={**details, "method": "password"})
        uow.commit()
        return SignInOutcome("signed_in" if admin else "no_access", email=email, name=found.name)


def _refuse_locked(uow: UnitOfWork, account: str, target: str, details: dict[str, Any]) -> SignInOutcome:
    audit.record(uow, actor=account, action=ACTION_LOCKED, target=target, result="denied", details=details)
    uow.commit()
    return SignInOutcome("locked", message=LOCKED_MESSAGE)


def record_session_refused(uow: UnitOfWork, *, email: str | None, reason: str, client: str | None) -> None:
    """Audit a session cookie the console would not honour (never the cookie's value)."""
    with uow:
        audit.record(uow, actor=email or "anonymous", action=ACTION_SESSION_REFUSED, target=client_key(client),
                     result="denied", details={"client": client or "loopback", "reason": reason})
        uow.commit()


def record_page_denied(uow: UnitOfWork, *, email: str | None, page: str, client: str | None) -> None:
    """Audit an admin page refused to someone without access (once per page and browser session)."""
    with uow:
        audit.record(uow, actor=email or "anonymous", action=ACTION_PAGE_DENIED, target=page[:255], result="denied",
                     details={"client": client or "loopback"})
        uow.commit()


METHOD_OIDC_UNVERIFIED = "oidc_unverified"  # signed in by the provider, but its email is not verified


def record_external_sign_in(uow: UnitOfWork, settings: Settings, *, email: str | None, method: str,
                            client: str | None, email_verified: bool = True) -> None:
    """Audit a sign-in the console did not check itself (OIDC): access needs a verified admin email."""
    normalised = normalise_email(email)
    admin = email_verified and normalised is not None and is_admin(normalised, settings)
    details: dict[str, Any] = {"client": client or "loopback", "method": method}
    if not email_verified:
        details["reason"] = "email not verified"
    with uow:
        audit.record(uow, actor=normalised or account_key(email or ""),
                     action=ACTION_SIGNED_IN if admin else ACTION_NO_ACCESS, target=client_key(client),
                     result="ok" if admin else "denied", details=details)
        uow.commit()
