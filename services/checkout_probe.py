"""The checkout rate-limit probe (ALwrity checklist §7: "hitting the create-checkout-session
endpoint rapidly produces HTTP 429"). A bounded burst, evenly spread over a short window,
against the SaaS's own endpoint; test and staging only, never in live mode."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

REQUEST_TIMEOUT_SECONDS = 5.0
MAX_REQUESTS = 200
MAX_WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    limited_after: int | None  # the request number that got the first 429
    seconds: float
    statuses: dict[str, int] = field(default_factory=dict)  # "200" / "429" / "error" -> count


def probe(url: str, *, requests: int, seconds: float, post: Callable[[str], int] | None = None,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> ProbeResult:
    """Send up to `requests` POSTs spread over `seconds`; stop at the first 429."""
    requests = max(1, min(requests, MAX_REQUESTS))
    seconds = max(0.0, min(seconds, MAX_WINDOW_SECONDS))
    interval = seconds / requests
    send = post or _post
    statuses: Counter[str] = Counter()
    started = clock()
    for number in range(1, requests + 1):
        due = started + (number - 1) * interval
        if (wait := due - clock()) > 0:
            sleep(wait)
        try:
            status = send(url)
        except httpx.HTTPError:
            statuses["error"] += 1
            continue
        statuses[str(status)] += 1
        if status == 429:
            return ProbeResult(number, number, round(clock() - started, 2), dict(statuses))
    return ProbeResult(requests, None, round(clock() - started, 2), dict(statuses))


def _post(url: str) -> int:
    # An empty JSON body: the probe only needs the limiter's answer, never a real session.
    response = httpx.post(url, json={}, timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False)
    return response.status_code
