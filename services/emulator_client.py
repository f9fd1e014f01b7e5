"""The one client of the Stripe emulator's own routes under `/_emulator/` (seed, reset,
rate limits, the checkout and 3-D Secure helpers a person would do in a browser, the
recorded requests, webhook flushing). Real Stripe has none of these; callers that may
run against it (the QA matrix) treat a failed call as "not available"."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def emulator_url(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}/_emulator/{path.lstrip('/')}"


def emulator_call(base_url: str, path: str, payload: dict[str, Any] | None = None, *, method: str = "POST",
                  timeout: float = 120.0) -> Any:
    """Call one emulator route with a JSON body (none for a bare GET); the decoded JSON answer, or None."""
    data = None if payload is None and method == "GET" else json.dumps(payload or {}).encode()
    request = urllib.request.Request(  # noqa: S310 (the configured emulator's http URL)
        emulator_url(base_url, path), data=data, method=method, headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the configured emulator)
        body = response.read()
    return json.loads(body) if body else None
