"""Is this request a genuine, fresh, storable Stripe event? Signature, shape and mode checks.

Everything here runs on the raw body before anything is stored (dj-stripe's "verify" step);
the receiver answers 4xx with `SignatureError.message` for anything refused.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import orjson

from services import webhook_secrets
from services.config import Settings
from services.errors import ConsoleError

# Stripe's default tolerance for Stripe-Signature timestamps (stripe.Webhook.DEFAULT_TOLERANCE).
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024
# Stripe's header is `t=<unix seconds>,v1=<64 hex>[,v1=...][,v0=...]`: a few hundred characters.
# Anything much longer, or a timestamp with more digits than any real time, is refused unparsed
# (int() of 4,300+ digits raises, and of 309+ digits overflows the float tolerance check).
MAX_SIGNATURE_HEADER_CHARS = 4096
MAX_TIMESTAMP_DIGITS = 12
SIGNATURE_HEX_CHARS = 64
MAX_SIGNED_WITH = 16  # fingerprints recorded per event (13 characters each with the comma)
# Stored columns and PostgreSQL's limits: ids and types are indexed (a btree entry has a size
# limit), `created` must be a real date, and JSON text may hold neither NUL nor lone surrogates.
MAX_ID_CHARS = 255
MAX_API_VERSION_CHARS = 64
MAX_JSON_DEPTH = 128
MAX_UNIX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second Python's datetime holds
BIGINT_RANGE = range(-(2**63), 2**63)

# Reasons counted as invalid signatures (the Webhooks page, the first-24h board, the alert).
INVALID_SIGNATURE_REASONS = frozenset({
    "no signature matches", "timestamp outside the tolerance", "missing Stripe-Signature header",
    "malformed Stripe-Signature header",
})
LIVEMODE_MISMATCH = "livemode mismatch"



class SignatureError(ConsoleError):
    """The request is not a genuine, fresh Stripe event; `reason` (the message) is safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """`t=..,v1=..` -> (timestamp, v1 signatures). Whatever does not parse (too long, non-ASCII,
    a timestamp that is not a plain number, two timestamps, no usable v1) is malformed; v1 values
    that are not 64 hex digits can never match, so they are dropped."""
    malformed = SignatureError("malformed Stripe-Signature header")
    # Starlette decodes header bytes as latin-1, so non-ASCII bytes arrive as non-ASCII text.
    if len(header) > MAX_SIGNATURE_HEADER_CHARS or not header.isascii():
        raise malformed
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1" and len(value) == SIGNATURE_HEX_CHARS and _is_hex(value):
            signatures.append(value.lower())
    if len(timestamps) != 1 or not signatures:
        raise malformed
    stamp = timestamps[0]
    if not (0 < len(stamp) <= MAX_TIMESTAMP_DIGITS and stamp.isdigit()):
        raise malformed
    return int(stamp), signatures


_HEX = re.compile(r"[0-9a-fA-F]+")


def _is_hex(value: str) -> bool:
    return _HEX.fullmatch(value) is not None


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """Check `Stripe-Signature: t=..,v1=..` against every secret (rotation) and
    every v1 (Stripe may send several), then parse the event and check it can be stored."""
    if not secrets:
        raise SignatureError("no webhook signing secret is configured")
    if len(payload) > MAX_BODY_BYTES:
        raise SignatureError("body too large")
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp, signatures = parse_signature_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    signed = f"{timestamp}.".encode() + payload
    expected = [_hmac_hex(secret, signed) for secret in secrets]
    # Every secret that matches (during a secret roll Stripe signs with the old and the new one).
    matched = [secret for secret, e in zip(secrets, expected, strict=True)
               if any(hmac.compare_digest(e, s) for s in signatures)]
    if not matched:
        raise SignatureError("no signature matches")
    event = _parse_json(payload)
    check_event(event, plain_body=_plain_body(payload))
    # At most MAX_SIGNED_WITH keys are named, so the column (255 characters) always holds them.
    return VerifiedEvent(event, signed_with=",".join(webhook_secrets.fingerprint(m)
                                                     for m in matched[:MAX_SIGNED_WITH]))


@functools.lru_cache(maxsize=64)
def _keyed(secret: str) -> Any:
    """An HMAC-SHA256 keyed with the secret once (its padded key already hashed in); each
    signature check copies it instead of keying a new one."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def _hmac_hex(secret: str, signed: bytes) -> str:
    mac = _keyed(secret).copy()
    mac.update(signed)
    return str(mac.hexdigest())


# A run of 19+ digits may be an integer past 64 bits, which orjson would read as a float: such a
# body takes the standard library's path, which keeps it an int (refused as out of range).
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")


def _plain_body(payload: bytes) -> bool:
    """A body whose parsed form needs no walk for `_unstorable_json`: no `\\u` escape (so no NUL
    and no lone surrogate in any string or key: raw control characters are not JSON, and the
    UTF-8 both parsers insist on cannot encode a surrogate), no run of 19+ digits (so orjson
    parsed it and every integer is below 10**18), and fewer brackets than MAX_JSON_DEPTH (so it
    cannot nest deeper). Byte scans in C instead of a walk over every value in Python."""
    return (b"\\u" not in payload and not _LONG_DIGIT_RUN.search(payload)
            and payload.count(b"{") + payload.count(b"[") <= MAX_JSON_DEPTH)


def _parse_json(payload: bytes) -> Any:
    """The body parsed (only after its signature verified): orjson for the common case; the
    standard library, which names the reason, for whatever orjson refuses or might read
    differently. Both refuse NaN/Infinity, numbers that overflow a double, invalid UTF-8 and a BOM."""
    if not _LONG_DIGIT_RUN.search(payload):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    try:
        # Stripe sends UTF-8; json.loads(bytes) would also guess UTF-16/32.
        return json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise SignatureError("body nests too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("body is not JSON") from None


class VerifiedEvent(dict[str, Any]):
    """A verified event (the parsed body, stored as it is) that also knows which configured
    secrets verified it, as fingerprints (`signed_with`, stored beside the payload, not in it)."""

    def __init__(self, event: dict[str, Any], *, signed_with: str) -> None:
        super().__init__(event)
        self.signed_with = signed_with


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _plain_id(value: Any, limit: int = MAX_ID_CHARS) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isascii() and value.isprintable()


def check_event(event: Any, *, plain_body: bool = False) -> None:
    """A signed body is stored only if it is an event the inbox can hold: the fields the storage
    path reads have the types and ranges Stripe documents, and nothing in it would make the
    database refuse the row (and so fail a whole batch). Raises SignatureError with the reason.
    `plain_body`: the raw body passed `_plain_body`, so the walk over every value is skipped."""
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
        and type(event.get("created")) is int  # bool is an int too
    ):
        raise SignatureError("body is not a Stripe event")
    if not _plain_id(event["id"]):
        raise SignatureError("event id is not a Stripe id (printable ASCII, at most 255 characters)")
    if not _plain_id(event["type"]):
        raise SignatureError("event type is not a Stripe event type (printable ASCII, at most 255 characters)")
    if not 0 <= event["created"] <= MAX_UNIX_TIME:
        raise SignatureError("event created is out of range")
    if "livemode" in event and not isinstance(event["livemode"], bool):
        raise SignatureError("event livemode is not a boolean")
    api_version = event.get("api_version")
    if api_version is not None and not _plain_id(api_version, MAX_API_VERSION_CHARS):
        raise SignatureError("event api_version is not a Stripe API version")
    object_id = event["data"]["object"].get("id")
    if object_id is not None and object_id != "" and not _plain_id(object_id):
        raise SignatureError("event object id is not a Stripe id (printable ASCII, at most 255 characters)")
    problem = None if plain_body else _unstorable_json(event)
    if problem:
        raise SignatureError(problem)


def _storable_text(value: str) -> bool:
    if "\x00" in value:  # PostgreSQL text and jsonb cannot hold NUL
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")  # lone surrogates (a JSON "\ud800") cannot be encoded
    except UnicodeEncodeError:
        return False
    return True


def _unstorable_json(value: Any) -> str | None:
    """Walk the parsed body without recursion; the first reason it cannot be stored, or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_JSON_DEPTH:
                return "body nests too deeply"
            for key, child in node.items():
                if not _storable_text(key):
                    return "body has text that cannot be stored (NUL or a lone surrogate)"
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_JSON_DEPTH:
                return "body nests too deeply"
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            if not _storable_text(node):
                return "body has text that cannot be stored (NUL or a lone surrogate)"
        elif isinstance(node, int) and not isinstance(node, bool) and node not in BIGINT_RANGE:
            return "body has a number out of range"
    return None


def livemode_matches(event: dict[str, Any], settings: Settings) -> bool:
    """A test-mode console takes only test-mode events and a live one only live events."""
    return bool(event.get("livemode", False)) == (settings.stripe_mode == "live")


