"""How `billing-ops serve-webhooks` runs the receiver: uvicorn with bounded connections and
timeouts. uvicorn bounds open connections (`limit_concurrency`), idle keep-alive time and
the listen backlog itself; it has no deadline for a request's headers, so a connection that
opens and sends nothing (or trickles its headers) would stay open until the fd limit. The
protocol below closes such a connection after WEBHOOK_HEADER_TIMEOUT_SECONDS and refuses
headers over WEBHOOK_MAX_HEADER_BYTES (h11 has that limit built in; httptools does not).
It also writes a response whose body comes in one message (every answer the receiver gives)
in one transport write, where uvicorn writes the status line and headers, then the body."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

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
        # When the headers now arriving began (None between requests). One timer per connection
        # checks it, re-armed only when it fires, instead of a timer set and cancelled per request.
        self._headers_since: float | None = None
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
        self._headers_since = None  # the timer, if it fires before the next request, lapses
        super().on_headers_complete()
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle:
            # Its task has not run yet, so the app gets this class's send.
            cycle.__class__ = WholeResponseCycle

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self.max_header_bytes is not None and self._header_bytes > self.max_header_bytes:
            # uvicorn answers a parser error with 400 and closes the connection.
            raise httptools.HttpParserError("request headers too large")

    def _arm_header_deadline(self) -> None:
        if not self.header_timeout:
            return
        self._headers_since = self.loop.time()
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        self._headers_since = None
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        since, timeout = self._headers_since, self.header_timeout
        if since is None or not timeout:
            return  # no headers arriving: the next request's first byte arms it again
        left = since + timeout - self.loop.time()
        if left > 0:  # these headers began after the timer was set: wait out their own deadline
            self._header_deadline = self.loop.call_later(left, self._header_deadline_passed)
        elif not self.transport.is_closing():
            self.transport.close()


class _HeldWrites:
    """Stands in for the transport while uvicorn formats one whole response: keeps its writes
    (and a close) so they go out as one write afterwards."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.parts: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing or self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class WholeResponseCycle(RequestResponseCycle):
    """uvicorn's request cycle, but `http.response.start` is held until the first body message:
    when that is the whole body, uvicorn's own send formats both into one write (one send
    syscall, one TCP segment for a small answer, instead of two); anything else is sent as
    uvicorn sends it."""

    _held_start: Any = None

    async def send(self, message: Any) -> None:
        held = self._held_start
        if held is None:
            if message["type"] == "http.response.start" and not self.response_started and not self.disconnected:
                self._held_start = message
                return
            await super().send(message)
            return
        if message["type"] == "http.response.start":
            # Nothing is written yet, so a later start wins: uvicorn's 500 for an app that
            # failed between its start and its body.
            self._held_start = message
            return
        self._held_start = None
        if message["type"] != "http.response.body" or message.get("more_body", False):
            await super().send(held)
            await super().send(message)
            return
        transport = self.transport
        writes = _HeldWrites(transport)
        self.transport = writes  # type: ignore[assignment]
        try:
            await super().send(held)
            await super().send(message)
        finally:
            self.transport = transport
            if writes.parts:
                transport.write(b"".join(writes.parts))
            if writes.closing:
                transport.close()


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
