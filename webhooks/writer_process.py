"""The receiver's writer in a child process of its own, spoken to from the event loop.

In one process the event loop (HTTP, verification) and the writer threads (building the batch,
SQLite's or psycopg's calls) share one interpreter lock, and each batch crosses threads twice
(a queue to the writer, a thread-safe wake-up back), so the receiver topped out at about one
core with the other half idle (benchmarks/README.md). Here each receiver process starts a
writer process at start-up, joined by a socketpair: the event loop writes every batch it
verified in one iteration as one frame (asyncio's transport, never blocking the loop) and reads
the answers as they come (a protocol on the same loop: no thread, no cross-thread wake-up);
the child, single-threaded, reads whatever has arrived, stores it in one transaction
(services.webhooks.store_events, the same code as InboxWriter's; on SQLite it takes turns with
other receiver processes' writers through the same file lock, and its WAL checkpoints run on a
thread beside it) and answers with each event's outcome. The 2xx is still sent only after the
child has committed.

If the child dies, every delivery it had not answered fails (a 500: Stripe redelivers, and a
row the child did commit is then a duplicate, stored once) and the next delivery starts a new
child. An event the database refuses fails alone: the child retries its batch one event at a time.
Frames: a 4-byte big-endian length, then JSON (orjson).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import select
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import orjson

from services import webhook_counts

logger = logging.getLogger(__name__)

_HEADER = 4
# Events one transaction takes at most in the child (it merges the frames that have arrived).
MAX_EVENTS_PER_COMMIT = 1024


class WriterProcessGone(RuntimeError):
    """The writer process exited before it answered: whether these events were stored is unknown."""


def frame(payload: Any) -> bytes:
    body = orjson.dumps(payload)
    return len(body).to_bytes(_HEADER, "big") + body


def unframe(buffer: bytearray) -> list[Any]:
    """The complete frames at the start of `buffer` (removed from it), parsed."""
    frames: list[Any] = []
    while len(buffer) >= _HEADER:
        size = int.from_bytes(buffer[:_HEADER], "big")
        if len(buffer) < _HEADER + size:
            break
        frames.append(orjson.loads(bytes(buffer[_HEADER:_HEADER + size])))
        del buffer[:_HEADER + size]
    return frames


class _Answers(asyncio.Protocol):
    """The receiver's end of the socketpair, on its event loop."""

    def __init__(self, owner: ProcessWriter) -> None:
        self.owner = owner
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for answers in unframe(self.buffer):
            self.owner.answered(answers)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(self)


class ProcessWriter:
    """The receiver's side: `await store(event)` is the outcome once the child committed it."""

    def __init__(self, settings: Any, lock_path: str | None) -> None:
        self._settings = settings
        self._lock_path = lock_path
        self._transport: asyncio.Transport | None = None
        self._protocol: _Answers | None = None
        self._process: Any = None
        self._starting: asyncio.Lock | None = None
        self._ids = itertools.count()
        # Batch id -> the futures of its deliveries, until the child answers (or is gone).
        self._pending: dict[int, list[asyncio.Future[str]]] = {}
        self._handed: list[tuple[dict[str, Any], asyncio.Future[str]]] = []

    @property
    def pid(self) -> int | None:
        """The writer process's pid while it runs (for logs and tests)."""
        process = self._process
        return int(process.pid) if process is not None and process.is_alive() else None

    async def start(self) -> None:
        """Start the child (at server start-up, and again after it died)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._transport is not None and not self._transport.is_closing():
                return
            ours, theirs = socket.socketpair()
            context = multiprocessing.get_context("spawn")  # never fork a process with threads and a loop
            process = context.Process(target=child_main, args=(theirs, self._settings, self._lock_path),
                                      name="webhook-writer", daemon=True)
            await asyncio.to_thread(process.start)
            theirs.close()
            protocol = _Answers(self)
            transport, _ = await asyncio.get_running_loop().create_connection(lambda: protocol, sock=ours)
            self._process, self._protocol = process, protocol
            self._transport = transport

    async def store(self, event: dict[str, Any]) -> str:
        if self._transport is None or self._transport.is_closing():
            await self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        if not self._handed:
            loop.call_soon(self._flush)  # what this iteration of the loop verifies goes as one frame
        self._handed.append((event, future))
        return await future

    def _flush(self) -> None:
        handed, self._handed = self._handed, []
        transport = self._transport
        if transport is None or transport.is_closing():
            for _, future in handed:
                if not future.done():
                    future.set_exception(WriterProcessGone("the writer process is gone"))
            return
        batch_id = next(self._ids)
        self._pending[batch_id] = [future for _, future in handed]
        transport.write(frame([batch_id, [[event, getattr(event, "signed_with", None)] for event, _ in handed]]))

    def answered(self, answers: list[Any]) -> None:
        """The child committed these batches: answer their deliveries, count them in /metrics."""
        for batch_id, outcomes in answers:
            futures = self._pending.pop(batch_id, [])
            counted: list[str] = []
            for future, (outcome, error) in zip(futures, outcomes, strict=True):
                if outcome is not None:
                    counted.append(outcome)  # stored even if its request gave up meanwhile
                if future.done():
                    continue
                if outcome is None:
                    future.set_exception(RuntimeError(f"the event could not be stored: {error}"))
                else:
                    future.set_result(outcome)
            webhook_counts.count_in_process(counted, source="webhook")

    def lost(self, protocol: _Answers) -> None:
        """The child's end closed (it exited or was killed): fail what it never answered."""
        if protocol is not self._protocol:
            return
        self._transport = None
        pending, self._pending = self._pending, {}
        for futures in pending.values():
            for future in futures:
                if not future.done():
                    future.set_exception(WriterProcessGone("the writer process exited before it answered"))
        process = self._process
        if process is not None and process.exitcode not in (None, 0):
            logger.error("the webhook writer process exited with code %s", process.exitcode)

    async def close(self, timeout: float = 30.0) -> None:
        """Wait for the answers still due, then let the child exit (it stops at end of input)."""
        waiting = [future for futures in self._pending.values() for future in futures]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        transport, process = self._transport, self._process
        self._transport = None
        if transport is not None:
            transport.close()
        if process is not None:
            await asyncio.to_thread(process.join, timeout)
            if process.is_alive():
                process.kill()


# --- the child ---------------------------------------------------------------------------------
def child_main(sock: socket.socket, settings: Any, lock_path: str | None) -> None:
    """Read what has arrived, store it in one transaction, answer; until the receiver closes its end."""
    # Ctrl-C reaches the whole process group: the child finishes what it was sent and stops when
    # the receiver closes the socket (or exits), never before.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # its name in ps and top (Linux), beside the receiver's
        Path("/proc/self/comm").write_text("webhook-writer")
    from db.wal_checkpointer import WalCheckpointer
    from services.observability import configure_logging
    from services.runtime import Runtime
    from services.webhook_signature import VerifiedEvent
    from webhooks.inbox_writer import close_writer_connection, open_writer_connection, sqlite_database_path

    runtime = Runtime(settings)
    configure_logging(settings=settings)
    holder = threading.local()
    connection = open_writer_connection(runtime)
    database = sqlite_database_path(runtime.engine)
    checkpointer = WalCheckpointer(database) if database else None
    if checkpointer is not None:
        checkpointer.start()
    buffer = bytearray()
    try:
        while True:
            taken = _arrived(sock, buffer)
            if taken is None:
                return  # the receiver closed its end, and everything it sent is answered
            events = [VerifiedEvent(event, signed_with=signed_with)
                      for _, items in taken for event, signed_with in items]
            results, connection = _store(runtime, connection, events, lock_path, holder)
            answers, start = [], 0
            for batch_id, items in taken:
                answers.append([batch_id, results[start:start + len(items)]])
                start += len(items)
            with contextlib.suppress(OSError):  # the receiver is gone: nobody reads the answer
                sock.sendall(frame(answers))
    finally:
        if checkpointer is not None:
            checkpointer.stop()
        close_writer_connection(runtime, connection)
        with contextlib.suppress(OSError):
            sock.close()


def _arrived(sock: socket.socket, buffer: bytearray) -> list[Any] | None:
    """Every complete frame that has arrived (waiting for the first), at most about
    MAX_EVENTS_PER_COMMIT events' worth; None at end of input with nothing left."""
    taken: list[Any] = []
    count = 0
    while True:
        for batch in unframe(buffer):
            taken.append(batch)
            count += len(batch[1])
        if taken and (count >= MAX_EVENTS_PER_COMMIT or not select.select([sock], [], [], 0)[0]):
            return taken
        data = sock.recv(1 << 20)
        if not data:
            return taken or None
        buffer += data


def _store(runtime: Any, connection: Any, events: list[Any], lock_path: str | None,
           holder: Any) -> tuple[list[tuple[str | None, str | None]], Any]:
    """Each event's (outcome, None) or (None, error); the connection to use next."""
    from webhooks.inbox_writer import close_writer_connection, open_writer_connection, write_batch

    try:
        outcomes = write_batch(runtime, connection, events, lock_path, holder, count=False)
        return [(outcome, None) for outcome in outcomes], connection
    except Exception as error:
        close_writer_connection(runtime, connection)  # a fresh one for what comes next
        connection = open_writer_connection(runtime)
        if len(events) == 1:
            logger.warning("the webhook writer could not store an event: %s", type(error).__name__)
            return [(None, type(error).__name__)], connection
    results: list[tuple[str | None, str | None]] = []
    for event in events:  # one event the database refuses must not fail its neighbours
        result, connection = _store(runtime, connection, [event], lock_path, holder)
        results += result
    return results, connection
