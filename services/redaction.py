"""Masking passwords inside URLs (`scheme://user:password@host`), shared by the settings
repr, log and audit scrubbing and the Sentry scrubber, and the secret-bearing fields of a
Stripe payload (the webhook log's payload view). Pure; imports nothing of ours."""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@ — the password runs to the last "@" of the authority (a raw "@" in
# a password is not URL-safe, but it must not leave half the password behind either).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*):(?P<password>[^\s/?#]*)@")


def mask_url_passwords(text: str) -> str:
    """Every `scheme://user:password@` in `text` becomes `scheme://user:***@`."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def url_passwords(text: str) -> list[str]:
    """The passwords inside URLs in `text`, as written and URL-decoded (for exact-value scrubbing)."""
    from urllib.parse import unquote

    found: list[str] = []
    for match in _URL_PASSWORD.finditer(text):
        password = match.group("password")
        if password:
            found.extend({password, unquote(password)})
    return found


# Stripe object fields that hold a secret: a PaymentIntent's, SetupIntent's or Checkout
# Session's `client_secret`, a webhook endpoint's or ephemeral key's `secret`.
SECRET_FIELDS = frozenset({"client_secret", "secret"})
REDACTED_FIELD = "[redacted]"


def redact_secret_fields(value: object) -> object:
    """A copy of a Stripe payload with every secret-bearing field's value replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED_FIELD if k in SECRET_FIELDS and v not in (None, "") else redact_secret_fields(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secret_fields(v) for v in value]
    return value
