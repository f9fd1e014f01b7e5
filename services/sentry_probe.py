"""Send one tagged test event to the configured Sentry project (Numzy runbook §1).

Uses its own sentry_sdk client (never the process-wide one), with the same
scrubber and `send_default_pii=False` as the app, and a transport that notes
whether the ingest refused or could not be reached, so the preflight can say
"sent, event id …" or "not delivered" instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sentry_sdk
from sentry_sdk.transport import HttpTransport

from services.config import Settings
from services.observability import make_before_send

TEST_EVENT_TAG = "billing_ops.preflight"
FLUSH_TIMEOUT_SECONDS = 5.0


class _RecordingTransport(HttpTransport):
    """The SDK's HTTP transport, remembering why an envelope was dropped (network, status_4xx/5xx)."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.dropped: list[str] = []

    def on_dropped_event(self, reason: str) -> None:
        self.dropped.append(reason)
        super().on_dropped_event(reason)


@dataclass(frozen=True)
class ProbeResult:
    event_id: str | None
    delivered: bool
    reason: str | None = None


def send_test_event(settings: Settings, *, run_id: str) -> ProbeResult:
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    if not dsn:
        return ProbeResult(None, False, "no SENTRY_DSN")
    try:
        client = sentry_sdk.Client(
            dsn, transport=_RecordingTransport, send_default_pii=False, default_integrations=False,
            include_local_variables=False, before_send=make_before_send(settings),  # type: ignore[arg-type]
            environment=settings.sentry_environment or settings.stripe_mode, send_client_reports=False,
        )
    except Exception as error:  # a malformed DSN; the message may quote it, so only the type is kept
        return ProbeResult(None, False, f"the DSN was refused ({error.__class__.__name__})")
    scope = sentry_sdk.Scope(client=client)
    scope.set_tag(TEST_EVENT_TAG, "test_event")
    scope.set_tag("billing_ops.preflight_run", run_id)
    # The client is called directly: Scope.capture_message would route through the global client.
    event_id = client.capture_event({"message": "billing-ops preflight test event: ignore", "level": "info"},
                                    scope=scope)
    client.flush(timeout=FLUSH_TIMEOUT_SECONDS)
    transport = client.transport
    dropped = list(getattr(transport, "dropped", []))
    client.close(timeout=0)
    if event_id is None:
        return ProbeResult(None, False, "the SDK did not create the event")
    if dropped:
        return ProbeResult(event_id, False, dropped[0])
    return ProbeResult(event_id, True)
