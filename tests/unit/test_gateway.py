"""The gateway's retry, backoff, rate limit and error translation, against a local
HTTP server that answers 429 and 500 (the real SDK, no mocks)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.config import load_settings
from services.stripe_gateway import RateLimiter, StripeGateway, StripeGatewayError

KEY = "sk_test_CANARYgateway123456"


class ScriptedStripe(BaseHTTPRequestHandler):
    """Answers from a per-path script of (status, body) and records every request."""

    script: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    seen: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        path = self.path.split("?")[0]
        type(self).seen.append(
            {"path": path, "idempotency_key": self.headers.get("Idempotency-Key"), "body": body, "t": time.monotonic()}
        )
        queue = type(self).script.get(path) or [(200, {"id": "ok", "object": "balance"})]
        status, payload = queue.pop(0) if len(queue) > 1 else queue[0]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Request-Id", "req_test")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def fake_stripe() -> Iterator[str]:
    ScriptedStripe.script = {}
    ScriptedStripe.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedStripe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _gateway(base: str, **env: str) -> tuple[StripeGateway, list[float]]:
    sleeps: list[float] = []
    settings = load_settings(
        {"STRIPE_API_KEY": KEY, "STRIPE_API_BASE": base, "STRIPE_RATE_LIMIT_PER_SECOND": "1000", **env},
        env_file=None,
    )
    return StripeGateway(settings, sleep=sleeps.append), sleeps


def _error(code: str, message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message}}


def test_retries_429_then_500_then_succeeds_with_same_idempotency_key(fake_stripe: str) -> None:
    ScriptedStripe.script["/v1/refunds"] = [
        (429, _error("rate_limit", "Too many requests", "rate_limit_error")),
        (500, _error("api_error", "boom", "api_error")),
        (200, {"id": "re_1", "object": "refund", "amount": 100}),
    ]
    gateway, sleeps = _gateway(fake_stripe)
    refund = gateway.create_refund({"charge": "ch_1"}, idempotency_key="refund:efw:issfr_1")
    assert refund["id"] == "re_1"
    attempts = [r for r in ScriptedStripe.seen if r["path"] == "/v1/refunds"]
    assert len(attempts) == 3
    assert {r["idempotency_key"] for r in attempts} == {"refund:efw:issfr_1"}
    assert gateway.stats.retries == 2
    # Full-jitter exponential backoff: each wait within [0, base * 2^n].
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_gives_up_after_max_retries_with_plain_message(fake_stripe: str) -> None:
    ScriptedStripe.script["/v1/refunds"] = [(500, _error("api_error", "boom", "api_error"))]
    gateway, sleeps = _gateway(fake_stripe, STRIPE_MAX_RETRIES="3")
    with pytest.raises(StripeGatewayError) as caught:
        gateway.create_refund({"charge": "ch_1"}, idempotency_key="refund:efw:issfr_2")
    assert caught.value.retryable and caught.value.http_status == 500
    assert len([r for r in ScriptedStripe.seen if r["path"] == "/v1/refunds"]) == 4
    assert len(sleeps) == 3


def test_4xx_is_not_retried_and_is_plain_words(fake_stripe: str) -> None:
    ScriptedStripe.script["/v1/refunds"] = [(400, _error("charge_disputed", "Charge ch_1 has been charged back"))]
    gateway, _ = _gateway(fake_stripe)
    with pytest.raises(StripeGatewayError) as caught:
        gateway.create_refund({"charge": "ch_1"}, idempotency_key="refund:efw:issfr_3")
    assert caught.value.code == "charge_disputed"
    assert "disputed" in caught.value.message
    assert len(ScriptedStripe.seen) == 1


def test_auth_error_never_contains_the_key(fake_stripe: str) -> None:
    ScriptedStripe.script["/v1/balance"] = [
        (401, _error("api_key_invalid", f"Invalid API Key provided: {KEY}", "invalid_request_error"))
    ]
    gateway, _ = _gateway(fake_stripe)
    with pytest.raises(StripeGatewayError) as caught:
        gateway.ping()
    assert KEY not in str(caught.value) and "CANARY" not in repr(caught.value.__dict__)


def test_pagination_uses_limit_100_and_starting_after(fake_stripe: str) -> None:
    page1 = {"object": "list", "has_more": True, "url": "/v1/disputes",
             "data": [{"id": f"dp_{i}", "object": "dispute"} for i in range(100)]}
    page2 = {"object": "list", "has_more": False, "url": "/v1/disputes",
             "data": [{"id": "dp_100", "object": "dispute"}]}
    ScriptedStripe.script["/v1/disputes"] = [(200, page1), (200, page2)]
    gateway, _ = _gateway(fake_stripe)
    ids = [d["id"] for d in gateway.list_disputes()]
    assert len(ids) == 101 and gateway.stats.list_calls == 2
    requests = [r for r in ScriptedStripe.seen if r["path"] == "/v1/disputes"]
    assert len(requests) == 2


def test_rate_limiter_holds_the_rate() -> None:
    limiter = RateLimiter(per_second=50, burst=1)
    start = time.monotonic()
    for _ in range(26):
        limiter.acquire()
    elapsed = time.monotonic() - start
    # 25 intervals at 50/s is 0.5 s at least; the bucket never lets a burst through.
    assert elapsed >= 0.45


def test_gateway_rate_stays_under_share_of_mode_limit(fake_stripe: str) -> None:
    settings = load_settings({"STRIPE_API_KEY": KEY, "STRIPE_API_BASE": fake_stripe}, env_file=None)
    gateway = StripeGateway(settings, record_request_times=True)
    assert gateway.limiter.per_second == 20.0  # 80 % of test mode's 25/s
    for _ in range(45):
        gateway.ping()
    times = gateway.stats.request_times
    # No burst: any one-second window holds at most the steady rate (+1 for the window edge).
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= 21


def test_no_key_is_a_clear_error() -> None:
    with pytest.raises(StripeGatewayError) as caught:
        StripeGateway(load_settings({}, env_file=None))
    assert "STRIPE_API_KEY" in caught.value.message
