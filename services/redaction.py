"""Masking passwords inside URLs (`scheme://user:password@host`), shared by the settings
repr, log and audit scrubbing and the Sentry scrubber. Pure; imports nothing of ours."""

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
