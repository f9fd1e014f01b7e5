"""The checkout rate-limit probe (issue 24 part 5, ALwrity §7) against two small local
servers, one that rate-limits and one that does not; never sent in live mode; sent only
by an explicit preflight run, not when sign-off re-reads the checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.preflight import run_preflight
from services.preflight_settings import check_checkout_rate_limit
from services.runtime import Runtime
from tests.integration.golive_fixtures import FakePreflightGateway, golive_settings


class CheckoutServer:
    """A stand-in create-checkout-session endpoint; `limit` requests per window, then 429."""

    def __init__(self, limit: int | None) -> None:
        self.hits = 0
        self.limit = limit
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.hits += 1
                limited = server.limit is not None and server.hits > server.limit
                self.send_response(429 if limited else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "rate limited"}' if limited else b'{"url": "https://checkout"}')

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/subscription/create-checkout-session"

    def stop(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def limited() -> Iterator[CheckoutServer]:
    server = CheckoutServer(limit=10)
    yield server
    server.stop()


@pytest.fixture
def unlimited() -> Iterator[CheckoutServer]:
    server = CheckoutServer(limit=None)
    yield server
    server.stop()


def _settings(url: str, **extra: str) -> Any:
    env = {"CHECKOUT_PROBE_URL": url, "CHECKOUT_PROBE_REQUESTS": "30", "CHECKOUT_PROBE_SECONDS": "1.5", **extra}
    return golive_settings("sqlite://", **env)


def test_a_rate_limited_endpoint_passes_after_its_first_429(limited: CheckoutServer) -> None:
    started = time.monotonic()
    result = check_checkout_rate_limit(_settings(limited.url))
    assert result.passed, result.message
    assert "answered 429 at request 11 of a burst of 30" in result.message
    assert limited.hits == 11  # the burst stops at the first 429
    assert time.monotonic() - started < 10


def test_an_endpoint_without_a_limit_fails_with_what_it_saw(unlimited: CheckoutServer) -> None:
    result = check_checkout_rate_limit(_settings(unlimited.url))
    assert not result.passed and result.severity == "warning"
    assert "never answered 429: 30 requests" in result.message and "30× 200" in result.message
    assert "Rate-limit the create-checkout-session endpoint" in result.fix
    assert unlimited.hits == 30  # bounded: exactly the configured burst


def test_never_sent_in_live_mode(limited: CheckoutServer) -> None:
    settings = _settings(limited.url, STRIPE_API_KEY="sk_live_SECRETCANARY0123456789ab", STRIPE_MODE="live")
    result = check_checkout_rate_limit(settings)
    assert not result.passed and "never sent in live mode" in result.message
    assert limited.hits == 0


def test_only_an_explicit_preflight_run_sends_the_burst(limited: CheckoutServer, migrated_sqlite_url: str) -> None:
    runtime = Runtime(golive_settings(migrated_sqlite_url, CHECKOUT_PROBE_URL=limited.url,
                                      CHECKOUT_PROBE_SECONDS="1", SENTRY_DSN=None))
    runtime.__dict__["gateway"] = FakePreflightGateway()
    assert "checkout.rate_limit" not in {r.id for r in run_preflight(runtime)}  # e.g. sign-off re-reading
    assert limited.hits == 0
    checks = {r.id: r for r in run_preflight(runtime, explicit_run=True)}
    assert checks["checkout.rate_limit"].passed and limited.hits == 11


def test_an_unreachable_endpoint_is_reported_not_raised() -> None:
    result = check_checkout_rate_limit(_settings("http://127.0.0.1:9/checkout", CHECKOUT_PROBE_REQUESTS="3"))
    assert not result.passed and "3× error" in result.message
