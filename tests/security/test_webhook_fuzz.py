"""Property-based fuzzing of the webhook receiver: forged, truncated, replayed-outside-
tolerance and malformed requests are never accepted, never crash it, never write a row."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from db.models import StripeEvent
from tests.conftest import TEST_WEBHOOK_SECRETS

# 5 strategies x 2,000 examples = 10,000 fuzzed requests per run (each test checks its own count).
EXAMPLES_PER_STRATEGY = 2_000
TOLERANCE_S = 300
PATHS = ("/billing/webhook", "/api/subscription/webhook")
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_STRATEGY,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


def sign(body: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_body(event_id: str) -> bytes:
    return json.dumps(
        {"id": event_id, "object": "event", "type": "invoice.paid", "created": int(time.time()),
         "api_version": "2026-10-28.endive", "livemode": False,
         "data": {"object": {"id": "in_fuzz", "object": "invoice"}}}
    ).encode()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from starlette.testclient import TestClient

    from db.migrate import upgrade
    from services.config import load_settings
    from services.runtime import Runtime
    from webhooks.app import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.db"
    upgrade(url)
    runtime = Runtime(load_settings({"DATABASE_URL": url, "STRIPE_API_KEY": "sk_test_fuzz",
                                     "STRIPE_API_BASE": "http://127.0.0.1:9",
                                     "STRIPE_WEBHOOK_SECRETS": ",".join(TEST_WEBHOOK_SECRETS)}, env_file=None))
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client, runtime


@pytest.fixture
def tally(receiver: tuple[Any, Any]) -> Iterator[dict[str, int]]:
    """One fuzz test's own count: after all its examples, it sent at least EXAMPLES_PER_STRATEGY
    requests, none was accepted or crashed the receiver, and no event row exists. Each test checks
    itself, so the tests pass alone and in any order."""
    counts = {"requests": 0, "accepted": 0, "server_errors": 0}
    yield counts
    _, runtime = receiver
    with runtime.uow() as uow:
        rows = uow.session.execute(select(func.count()).select_from(StripeEvent)).scalar()
    print(f"\nwebhook fuzz: {counts['requests']} requests, {counts['accepted']} accepted, "
          f"{counts['server_errors']} 5xx, {rows} rows written")
    assert rows == 0
    assert counts["requests"] >= EXAMPLES_PER_STRATEGY
    assert counts["accepted"] == 0 and counts["server_errors"] == 0


def _post(receiver: tuple[Any, Any], tally: dict[str, int], path: str, body: bytes,
          header: str | bytes | None) -> None:
    client, _ = receiver
    headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    response = client.post(path, content=body, headers=headers)
    tally["requests"] += 1
    if 200 <= response.status_code < 300:
        tally["accepted"] += 1
    if response.status_code >= 500:
        tally["server_errors"] += 1
    assert response.status_code < 500, response.text
    assert not 200 <= response.status_code < 300, (header, body[:80])


header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


@FUZZ_SETTINGS
@given(path=st.sampled_from(PATHS), event_id=st.text(min_size=1, max_size=30), header=header_text,
       forged_secret=st.text(min_size=1, max_size=40))
def test_forged_signatures_are_refused(receiver: Any, tally: dict[str, int], path: str, event_id: str,
                                       header: str, forged_secret: str) -> None:
    body = event_body(f"evt_{event_id}")
    forged = sign(body, "whsec_" + forged_secret, int(time.time()))
    _post(receiver, tally, path, body, header if len(header) % 2 else forged)


@FUZZ_SETTINGS
@given(path=st.sampled_from(PATHS), cut=st.integers(min_value=1, max_value=400),
       secret=st.sampled_from(TEST_WEBHOOK_SECRETS), event_id=st.text(min_size=1, max_size=30))
def test_truncated_or_extended_bodies_are_refused(receiver: Any, tally: dict[str, int], path: str, cut: int,
                                                  secret: str, event_id: str) -> None:
    body = event_body(f"evt_trunc_{cut}_{event_id}")
    header = sign(body, secret, int(time.time()))
    tampered = body[:-cut] if cut < len(body) else body + b" " * (cut - len(body) + 1)
    _post(receiver, tally, path, tampered, header)


@FUZZ_SETTINGS
@given(path=st.sampled_from(PATHS),
       skew=st.one_of(st.integers(TOLERANCE_S + 1, 10**8), st.integers(-(10**8), -(TOLERANCE_S + 5))),
       secret=st.sampled_from(TEST_WEBHOOK_SECRETS))
def test_replays_outside_tolerance_are_refused(receiver: Any, tally: dict[str, int], path: str, skew: int,
                                               secret: str) -> None:
    # future stamps keep a few seconds' margin: the receiver's clock may tick past the signer's before it checks
    body = event_body(f"evt_replay_{abs(skew)}")
    _post(receiver, tally, path, body, sign(body, secret, int(time.time()) - skew))


@FUZZ_SETTINGS
@given(path=st.sampled_from(PATHS), body=st.binary(max_size=600), header=st.one_of(st.none(), header_text),
       secret=st.sampled_from(TEST_WEBHOOK_SECRETS), sign_it=st.booleans())
def test_malformed_requests_are_refused(receiver: Any, tally: dict[str, int], path: str, body: bytes,
                                        header: str | None, secret: str, sign_it: bool) -> None:
    try:
        parsed = json.loads(body)
        is_event = isinstance(parsed, dict) and isinstance(parsed.get("id"), str) and isinstance(
            parsed.get("type"), str)
    except (ValueError, UnicodeDecodeError):
        is_event = False
    if sign_it and not is_event:
        header = sign(body, secret, int(time.time()))  # validly signed garbage is still garbage
    _post(receiver, tally, path, body, header)


_header_bytes = st.binary(min_size=1, max_size=300).filter(lambda b: not set(b) & {0, 10, 13})
hostile_header = st.one_of(
    # timestamps of hundreds to thousands of digits (int() refuses 4,300+, floats overflow past 308)
    st.integers(min_value=300, max_value=6000).map(lambda n: f"t={'9' * n},v1={'0' * 64}".encode()),
    # raw bytes, arriving as latin-1 text
    _header_bytes,
    # a real timestamp with a non-ASCII or non-hex v1
    st.tuples(st.integers(min_value=0, max_value=2**40), _header_bytes).map(
        lambda p: f"t={int(time.time()) - p[0] % 200},v1=".encode() + p[1]),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, exclude_categories=["Cs"]),
            min_size=1, max_size=64).map(lambda t: f"t={int(time.time())},v1={t}".encode()),
    # duplicates and junk around a well-formed pair, and over-long headers
    st.tuples(st.lists(st.sampled_from(["t=1", "t=", "v1=", "=", "v1", ",", "t=99", "v0=ab", " "]), max_size=40),
              st.integers(min_value=0, max_value=400)).map(
        lambda p: (",".join(p[0]) + f",t={int(time.time())},v1={'a' * 64}" + ",v1=0" * p[1]).encode()),
)


@FUZZ_SETTINGS
@given(path=st.sampled_from(PATHS), header=hostile_header, event_id=st.text(min_size=1, max_size=30))
def test_hostile_signature_headers_are_refused(receiver: Any, tally: dict[str, int], path: str, header: bytes,
                                               event_id: str) -> None:
    _post(receiver, tally, path, event_body(f"evt_hdr_{event_id}"), header)
