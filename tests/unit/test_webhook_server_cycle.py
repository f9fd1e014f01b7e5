"""webhooks/server.py's WholeResponseCycle: a response whose body comes in one message goes out
in ONE transport write (uvicorn writes the head, then the body); anything else as uvicorn sends it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from webhooks.server import WholeResponseCycle


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append("write")

    def close(self) -> None:
        self.closed = True
        self.events.append("close")

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _cycle(transport: _Transport, *, keep_alive: bool = True) -> tuple[WholeResponseCycle, list[str]]:
    completed: list[str] = []
    scope: Any = {"type": "http", "method": "POST", "path": "/billing/webhook", "headers": []}
    cycle = WholeResponseCycle(
        scope=scope, transport=transport, flow=FlowControl(transport), logger=logging.getLogger("test"),  # type: ignore[arg-type]
        access_logger=logging.getLogger("test.access"), access_log=False, default_headers=[],
        message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive,
        on_response=lambda: completed.append("done"))
    return cycle, completed


def _run(answer: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """asyncio.run on a thread of its own: earlier tests in the same process (Playwright's sync API,
    AppTest) can leave an event loop running on the main thread, where asyncio.run refuses."""
    failures: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(answer())
        except BaseException as error:  # noqa: BLE001 (re-raised on the test's thread)
            failures.append(error)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def _start(status: int = 200, length: int = 2) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]}


def test_a_whole_response_is_one_write() -> None:
    transport = _Transport()
    cycle, completed = _cycle(transport)

    async def answer() -> None:
        await cycle.send(_start())
        assert transport.writes == []  # the head waits for its body
        await cycle.send({"type": "http.response.body", "body": b"{}"})

    _run(answer)
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 2" in head and body == b"{}"
    assert cycle.response_complete and completed == ["done"] and not transport.closed


def test_without_keep_alive_the_close_follows_the_one_write() -> None:
    transport = _Transport()
    cycle, _ = _cycle(transport, keep_alive=False)

    async def answer() -> None:
        await cycle.send(_start(413))
        await cycle.send({"type": "http.response.body", "body": b"{}"})

    _run(answer)
    assert transport.events == ["write", "close"]
    assert transport.writes[0].startswith(b"HTTP/1.1 413 ") and b"connection: close" in transport.writes[0]


def test_a_streamed_body_is_sent_as_uvicorn_sends_it() -> None:
    transport = _Transport()
    cycle, completed = _cycle(transport)

    async def answer() -> None:
        await cycle.send(_start(length=4))
        await cycle.send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await cycle.send({"type": "http.response.body", "body": b"cd"})

    _run(answer)
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK") and transport.writes[1:] == [b"ab", b"cd"]
    assert completed == ["done"]


def test_a_second_start_before_any_body_wins() -> None:
    """uvicorn's 500 for an app that failed between its start and its body: nothing was written
    yet, so the client gets the 500, whole."""
    transport = _Transport()
    cycle, _ = _cycle(transport)

    async def answer() -> None:
        await cycle.send(_start(200))
        await cycle.send_500_response()

    _run(answer)
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 500 ")
    assert transport.closed  # the 500 says connection: close
