"""How `billing-ops serve-webhooks` runs the receiver: uvicorn with bounded connections and
timeouts. uvicorn bounds open connections (`limit_concurrency`), idle keep-alive time and
the listen backlog itself; it has no deadline for a request's headers, so a connection that
opens and sends nothing (or trickles its headers) would stay open until the fd limit. The
protocol below closes such a connection after WEBHOOK_HEADER_TIMEOUT_SECONDS and refuses
headers over WEBHOOK_MAX_HEADER_BYTES (h11 has that limit built in; httptools does not)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.config import Settings, load_settings


@functools.cache
def _limits() -> tuple[float, int]:
    settings = load_settings()
    return settings.webhook_header_timeout_seconds, settings.webhook_max_header_bytes


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header deadline and a header size limit."""

    header_timeout: float | None = None
    max_header_bytes: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.header_timeout is None or self.max_header_bytes is None:
            timeout, max_bytes = _limits()
            self.header_timeout = self.header_timeout or timeout
            self.max_header_bytes = self.max_header_bytes or max_bytes
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm_header_deadline()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self.max_header_bytes is not None and self._header_bytes > self.max_header_bytes:
            # uvicorn answers a parser error with 400 and closes the connection.
            raise httptools.HttpParserError("request headers too large")

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        if self.header_timeout:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The server settings `serve-webhooks` (and the attack benchmark) start uvicorn with.
    Worker processes (`--workers`) read the same limits from the environment."""
    GuardedHttpToolsProtocol.header_timeout = settings.webhook_header_timeout_seconds
    GuardedHttpToolsProtocol.max_header_bytes = settings.webhook_max_header_bytes
    return {
        "http": GuardedHttpToolsProtocol,
        "limit_concurrency": settings.webhook_limit_concurrency,
        "timeout_keep_alive": settings.webhook_keep_alive_seconds,
        "h11_max_incomplete_event_size": settings.webhook_max_header_bytes,
        "backlog": settings.webhook_backlog,
        # Per request the least work: uvloop's event loop, no access-log record (the receiver counts
        # deliveries in /metrics and metric_points), no proxy-header rewrite (nothing here reads the
        # client address) and no Server header.
        "loop": "uvloop",
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
    }
