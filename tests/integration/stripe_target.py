"""One contract suite, two targets: the emulator by default, a real Stripe test-mode account
when STRIPE_TEST_API_KEY is set.

The contract tests (tests/integration/test_emulator_*.py) take their `client` from the
`stripe_target` fixture (tests/integration/conftest.py), which is parametrised over both
targets. The real-Stripe half is skipped, with the reason printed, when no key is set; a test
that can only run on the emulator (it drives `/_emulator/` helpers, fault injection, the
emulator's own settings, or delivers webhooks to a local receiver) carries
`@pytest.mark.emulator_only(reason=...)` saying why, and gets no real-Stripe half.

Stripe advances a test clock asynchronously (the advance answers `advancing`; the clock turns
`ready` when its billing work is done), where the emulator finishes within the request. So
that the same test reads the same state on both, the real-Stripe client waits, after an
advance, until the clock is no longer `advancing` and answers with the clock as it is then.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe

REAL_KEY_ENV = "STRIPE_TEST_API_KEY"
EMULATOR = "emulator"
REAL_STRIPE = "stripe-test-mode"
TARGETS = (EMULATOR, REAL_STRIPE)
CLOCK_ADVANCE = re.compile(r"/v1/test_helpers/test_clocks/(clock_[A-Za-z0-9]+)/advance$")
CLOCK_WAIT_SECONDS = 120.0
CLOCK_POLL_SECONDS = 1.0


def real_stripe_key() -> tuple[str | None, str]:
    """The test-mode secret key for the real-Stripe half, or None and why it is skipped."""
    key = os.environ.get(REAL_KEY_ENV, "").strip()
    if not key:
        return None, f"{REAL_KEY_ENV} not set: the real-Stripe half of the contract suite is skipped"
    if not key.startswith(("sk_test_", "rk_test_")):
        return None, f"{REAL_KEY_ENV} is not a test-mode key (sk_test_/rk_test_): refusing to run on it"
    return key, ""


class ClockSettlingClient(stripe.HTTPClient):
    """The SDK's default HTTP client, except that a test-clock advance answers once the clock
    has finished advancing (Stripe's own advance is asynchronous)."""

    name = "clock-settling"

    def __init__(self, inner: stripe.HTTPClient | None = None) -> None:
        super().__init__()
        self._inner = inner or stripe.new_default_http_client()

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, *,
                _usage: list[str] | None = None) -> tuple[str, int, Mapping[str, str]]:
        body, status, response_headers = self._inner.request(method, url, headers, post_data)
        advance = CLOCK_ADVANCE.search(url.split("?", 1)[0])
        if method.lower() != "post" or status != 200 or advance is None:
            return body, status, response_headers
        clock_url = url.split("?", 1)[0][: -len("/advance")]
        read_headers = {k: v for k, v in (headers or {}).items()
                        if k.lower() not in ("content-type", "idempotency-key", "content-length")}
        deadline = time.monotonic() + CLOCK_WAIT_SECONDS
        while json.loads(body).get("status") == "advancing" and time.monotonic() < deadline:
            time.sleep(CLOCK_POLL_SECONDS)
            body, status, response_headers = self._inner.request("get", clock_url, read_headers, None)
            if status != 200:
                break
        return body, status, response_headers

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, *,
                       _usage: list[str] | None = None) -> tuple[Any, int, Mapping[str, str]]:
        return self._inner.request_stream(method, url, headers, post_data)

    def close(self) -> None:
        self._inner.close()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class StripeTarget:
    """Where a contract test's SDK calls go: `base_url` for the emulator, None for Stripe."""

    name: str
    base_url: str | None = None
    api_key: str | None = None

    @property
    def is_emulator(self) -> bool:
        return self.name == EMULATOR

    def client(self, emulator_key: str, *, files: bool = False, max_network_retries: int = 0) -> stripe.StripeClient:
        """A StripeClient for this target. On the emulator: `emulator_key` (any sk_test_ key) and the
        emulator's address (also for uploads with `files`). On Stripe: the account's key, Stripe's
        addresses, network retries on, and test-clock advances that answer once settled."""
        if self.is_emulator:
            assert self.base_url
            addresses: dict[str, str] = {"api": self.base_url}
            if files:
                addresses["files"] = self.base_url
            return stripe.StripeClient(emulator_key, base_addresses=addresses,  # type: ignore[arg-type]
                                       max_network_retries=max_network_retries)
        assert self.api_key
        return stripe.StripeClient(self.api_key, max_network_retries=max(2, max_network_retries),
                                   http_client=ClockSettlingClient())


# Reasons a contract test can only run on the emulator, for `emulator_only(reason=...)`.
FIXED_IDEMPOTENCY_KEYS = ("uses fixed idempotency keys: a rerun on the same account within Stripe's 24 h key "
                          "lifetime replays the last run")


def empty_account(what: str) -> str:
    """The reason for a test that reads every `what` in the account, not only its own."""
    return f"reads every {what} in the account: needs the empty account the emulator resets to before each test"
