"""Fingerprints of webhook signing secrets: how the console names a secret without showing it.

A fingerprint is the first 12 hex digits of SHA-256 over a fixed label and the secret. It tells
the configured secrets apart (the log's "verified with", the guided secret roll) and reveals
nothing usable about the secret: it is not a prefix or suffix of it, and the secret's 190+ bits
of randomness cannot be searched from it. Pure; imports nothing of ours.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

FINGERPRINT_HEX = 12
_LABEL = b"billing-ops webhook signing secret fingerprint:"


@functools.lru_cache(maxsize=64)
def fingerprint(secret: str) -> str:
    return hashlib.sha256(_LABEL + secret.encode()).hexdigest()[:FINGERPRINT_HEX]


def fingerprints(secrets: Sequence[str]) -> list[str]:
    """The fingerprints of the configured secrets, in configuration order."""
    return [fingerprint(secret) for secret in secrets]


def label(fp: str, configured: Sequence[str]) -> str:
    """`key 1a2b3c4d5e6f (#2 of 2)` for a configured fingerprint, `... (no longer configured)` otherwise."""
    if fp in configured:
        return f"key {fp} (#{list(configured).index(fp) + 1} of {len(configured)})"
    return f"key {fp} (no longer configured)"
