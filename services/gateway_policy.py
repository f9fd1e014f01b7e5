"""The gateway's policies, apart from the SDK calls: the error callers catch and its plain
words, which failures are worth retrying, the jittered backoff, and the client-side rate limit.

Nothing here imports `stripe` (services/stripe_gateway.py stays the one module that talks to
Stripe); the gateway reads the SDK error's plain attributes and asks these functions.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from services.errors import ConsoleError
from services.observability import scrub_text

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0

# Plain words for the errors ops will meet; anything else falls back to Stripe's own message.
PLAIN_MESSAGES = {
    "charge_disputed": "This charge has been disputed, so it can no longer be refunded.",
    "charge_already_refunded": "This charge has already been fully refunded.",
    "amount_too_large": "The amount is more than what is left to refund on this charge.",
    "resource_missing": "Stripe has no such object (it may belong to the other mode or was deleted).",
    "idempotency_error": "This action was already sent with different details; reload and try again.",
    "rate_limit": "Stripe is rate limiting us; the request was retried and still refused. Try again shortly.",
    "card_declined": "The card was declined.",
    "expired_card": "The card has expired.",
}
AUTHENTICATION_MESSAGE = "Stripe rejected the API key (check STRIPE_API_KEY and STRIPE_MODE)."
CONNECTION_MESSAGE = "Could not reach Stripe (network error); nothing was changed. Try again."


class StripeGatewayError(ConsoleError):
    """A Stripe call failed. `message` is safe to show on a page or in a log."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.retryable = retryable
        self.param = param


@dataclass(frozen=True)
class ErrorFacts:
    """What the gateway read off an SDK error (its class decides the first two)."""

    kind: str  # "authentication" | "connection" | "rate_limit" | "other"
    code: str | None
    http_status: int | None
    request_id: str | None
    param: str | None
    user_message: str | None
    raw_message: str | None
    class_name: str

    @property
    def retryable(self) -> bool:
        """429, 5xx and connection failures are retried (with the same idempotency key)."""
        if self.kind in ("rate_limit", "connection"):
            return True
        status = self.http_status or 0
        return status == 429 or status >= 500


def gateway_error(facts: ErrorFacts) -> StripeGatewayError:
    """The error callers see: plain words (never a key), the code, and whether a retry may help."""
    if facts.kind == "authentication":
        message = AUTHENTICATION_MESSAGE
    elif facts.kind == "connection":
        message = CONNECTION_MESSAGE
    elif facts.code and facts.code in PLAIN_MESSAGES:
        message = PLAIN_MESSAGES[facts.code]
    else:
        message = facts.user_message or facts.raw_message or "Stripe returned an error."
    return StripeGatewayError(
        scrub_text(message),
        code=facts.code or (facts.class_name if facts.http_status is None else None),
        http_status=facts.http_status,
        request_id=facts.request_id,
        retryable=facts.retryable,
        param=facts.param,
    )


def backoff_seconds(attempt_number: int) -> float:
    """Full jitter (AWS architecture blog) keeps retrying workers from synchronising."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (2 ** (attempt_number - 1)))
    return random.uniform(0, ceiling)


class RateLimiter:
    """Token bucket shared by every gateway in the process for one mode."""

    def __init__(self, per_second: float, burst: float | None = None) -> None:
        self.per_second = per_second
        # No burst by default: with capacity c, a one-second window can hold c + rate
        # requests, and the rate is already the 80 % ceiling.
        self.capacity = burst if burst is not None else 1.0
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.per_second)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                delay = (1 - self._tokens) / self.per_second
            time.sleep(delay)
            waited += delay


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_rate_limiter(key: str, per_second: float) -> RateLimiter:
    with _limiters_lock:
        limiter = _limiters.get((key, per_second))
        if limiter is None:
            limiter = _limiters[(key, per_second)] = RateLimiter(per_second)
        return limiter


@dataclass
class GatewayStats:
    requests: int = 0
    retries: int = 0
    list_calls: int = 0
    throttled_seconds: float = 0.0
    request_times: list[float] = field(default_factory=list)
