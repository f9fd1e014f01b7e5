"""Who is signed in and what they may do. Pure functions plus one seam.

`is_admin` is pure so it can be tested against a table of tricky emails.
`current_identity` is the one seam pages read; the Streamlit-specific
sign-in lives in app.py and app_pages/_shared.py, which store the identity
through `set_identity_provider`.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from services.config import Settings
from services.errors import ConsoleError


@dataclass(frozen=True)
class Identity:
    email: str
    name: str | None = None
    signed_in_at: float = 0.0
    last_seen_at: float = 0.0
    method: str = "password"  # password | oidc | disabled
    session_id: str | None = None  # the browser session (services.web_sessions), password sign-in only


class AccessDenied(ConsoleError):
    """The caller may not do this; the message is safe to show."""


ASCII_WHITESPACE = " \t\r\n\v\f"


def fold_email(email: str) -> str | None:
    """NFKC then casefold; None when the address is not plain ASCII.

    A non-ASCII character that folds into ASCII (Kelvin sign K, fullwidth
    letters, ligatures) is a look-alike of a real address, and one that does
    not (dotless i, Cyrillic) is a different address that reads the same, so
    either way the address is refused rather than matched.
    """
    cleaned = email.strip(ASCII_WHITESPACE)  # a no-break or zero-width space is not trimmed: it is refused
    if not cleaned.isascii():
        return None
    return unicodedata.normalize("NFKC", cleaned).casefold()


def normalise_email(email: str | None) -> str | None:
    """Trim, NFKC-normalise and casefold; None for anything that is not exactly one
    ASCII local@domain."""
    if email is None:
        return None
    cleaned = fold_email(email)
    if cleaned is None or cleaned.count("@") != 1:
        return None
    local, domain = cleaned.split("@")
    if not local or not domain or any(ch.isspace() for ch in cleaned):
        return None
    return cleaned


def is_admin(email: str | None, settings: Settings) -> bool:
    """ADMIN_EMAILS: exact match, case-insensitive. ADMIN_EMAIL_DOMAIN: the exact
    domain after the `@` (no suffix, subdomain or lookalike match)."""
    normalised = normalise_email(email)
    if normalised is None:
        return False
    if normalised in settings.admin_emails:
        return True
    domain = settings.admin_email_domain
    return bool(domain) and normalised.rsplit("@", 1)[1] == domain


def signoff_roles(email: str | None, settings: Settings) -> set[str]:
    normalised = normalise_email(email)
    roles: set[str] = set()
    if normalised is None:
        return roles
    if normalised in settings.signoff_eng_leads:
        roles.add("eng_lead")
    if normalised in settings.signoff_product_owners:
        roles.add("product_owner")
    return roles


def session_expired(identity: Identity, settings: Settings, now: float | None = None) -> str | None:
    """Why the session is over (idle too long, or past its absolute lifetime), or None."""
    now = time.time() if now is None else now
    if now - identity.last_seen_at > settings.session_idle_timeout_seconds:
        return "Signed out after 30 minutes without activity." if settings.session_idle_timeout_seconds == 1800 else (
            "Signed out after a period without activity."
        )
    if now - identity.signed_in_at > settings.session_max_lifetime_seconds:
        return "Your session reached its maximum length; please sign in again."
    return None


_identity_provider: Callable[[], Identity | None] = lambda: None  # noqa: E731


def set_identity_provider(provider: Callable[[], Identity | None]) -> None:
    global _identity_provider
    _identity_provider = provider


def current_identity() -> Identity | None:
    return _identity_provider()
