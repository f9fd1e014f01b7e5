"""The receiver's group commit: a writer thread stores what concurrent deliveries hand it in one
transaction (services.webhooks.store_events), then answers each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from db.wal_checkpointer import WalCheckpointer, hand_off_checkpoints, restore_checkpoints
from services.runtime import Runtime
from services.webhooks import store_events


class InboxWriter:
    """Group commit for the receiver. Request handlers hand verified events to a writer
    thread (two on PostgreSQL), which stores everything waiting in one transaction and then
    resolves each request's future. Concurrent deliveries share a commit instead of queuing one by one
    for SQLite's write lock (whose busy handler sleeps up to 100 ms a turn) or for
    PostgreSQL's WAL flush; a lone delivery is written at once, never held back."""

    MAX_BATCH = 256
    POSTGRES_WRITERS = 2

    def __init__(self, runtime: Runtime, *, threads: int | None = None) -> None:
        self._runtime = runtime
        # Items are lists of deliveries (what one event-loop iteration handed over), or None (stop).
        self._queue: queue.SimpleQueue[list[tuple[dict[str, Any], Future[str] | _LoopWaiter]] | None] = \
            queue.SimpleQueue()
        # Per event loop, the deliveries handed over during its current iteration (flushed at its end).
        self._handed: dict[asyncio.AbstractEventLoop, list[tuple[dict[str, Any], Future[str] | _LoopWaiter]]] = {}
        # PostgreSQL: two writers (two connections), so one batch is gathered and sent while the
        # other's statement runs; more writers take smaller batches (PostgreSQL's per-statement
        # cost and the per-batch Python then fall on fewer events) and add thread switches and GIL
        # hand-offs, one writer leaves the loop waiting for the whole chain in turn
        # (benchmarks/README.md). SQLite writes one transaction at a time anyway: one writer.
        self._thread_count = threads or (self.POSTGRES_WRITERS if runtime.engine.dialect.name == "postgresql" else 1)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # Each writer thread's own connection (and SQLite lock file), kept between batches (no
        # pool checkout or pre-ping round trip per batch); dropped after any error, so the next
        # batch starts on a fresh one.
        self._local = threading.local()
        database = sqlite_database_path(runtime.engine)
        self._lock_path = writer_lock_path(runtime.engine)
        # SQLite file: WAL checkpoints run beside the writer, not inside its commits (db/wal_checkpointer.py).
        self._checkpointer = WalCheckpointer(database) if database else None

    def submit(self, event: dict[str, Any]) -> Future[str]:
        """The future resolves to the outcome once the row is committed, or to the error."""
        future: Future[str] = Future()
        self._enqueue([(event, future)])
        return future

    async def store(self, event: dict[str, Any]) -> str:
        """The outcome once the row is committed (or the error raised), for a caller on an event
        loop. The deliveries verified in one iteration of the loop reach the writer together, at
        the end of that iteration (one queue put, one writer wake-up, not one per request), and
        the writer wakes each loop once per batch rather than once per request."""
        loop = asyncio.get_running_loop()
        waiter = _LoopWaiter(loop)
        handed = self._handed.get(loop)
        if handed is None:
            handed = self._handed[loop] = []
            loop.call_soon(self._hand_over, loop)
        handed.append((event, waiter))
        return await waiter.future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        handed = self._handed.pop(loop, [])
        for start in range(0, len(handed), self.MAX_BATCH):
            self._enqueue(handed[start:start + self.MAX_BATCH])

    def _enqueue(self, items: list[tuple[dict[str, Any], Future[str] | _LoopWaiter]]) -> None:
        with self._lock:
            if len(self._threads) < self._thread_count or not all(t.is_alive() for t in self._threads):
                self._threads = [t for t in self._threads if t.is_alive()]
                while len(self._threads) < self._thread_count:
                    thread = threading.Thread(target=self._run, name="webhook-inbox-writer", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._queue.put(items)

    def close(self) -> None:
        """Store what is queued, then stop the thread."""
        with self._lock:
            threads, self._threads = self._threads, []
            for _ in threads:
                self._queue.put(None)  # each writer stops at the first None it takes
        for thread in threads:
            thread.join()
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._drop_connection()
            lock_file = getattr(self._local, "lock_file", None)
            if lock_file is not None:
                lock_file.close()
                self._local.lock_file = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = list(item)
            stopping = False
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch += more
            for _, future in batch:
                # From here a request that gave up (client gone, server stopping) can no longer
                # cancel its future; its event is stored anyway and a redelivery is a duplicate.
                future.set_running_or_notify_cancel()
            self._store(batch)
            if stopping:
                return

    def _connection(self) -> Any:
        """This thread's connection (open_writer_connection), opened on its first batch."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = open_writer_connection(self._runtime)
            if self._checkpointer is not None:
                self._checkpointer.start()
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            close_writer_connection(self._runtime, connection)

    def _store(self, batch: list[tuple[dict[str, Any], Future[str] | _LoopWaiter]]) -> None:
        try:
            outcomes = write_batch(self._runtime, self._connection(), [event for event, _ in batch],
                                   self._lock_path, self._local)
        except Exception as error:  # the requests answer 5xx, so Stripe redelivers
            self._drop_connection()
            if len(batch) > 1:
                # One event the DB refuses must not fail its neighbours: store each alone.
                for item in batch:
                    self._store([item])
                return
            _settle(batch[0][1], error=error)
            return
        waiting: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[str], str]]] = {}
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(future, _LoopWaiter):
                waiting.setdefault(future.loop, []).append((future.future, outcome))
            else:
                _settle(future, outcome=outcome)
        for loop, answers in waiting.items():
            _call_soon(loop, _answer_all, answers)


def open_writer_connection(runtime: Runtime) -> Any:
    """A writer's own connection, kept between batches (no pool checkout or pre-ping round trip
    per batch): on PostgreSQL a SQLAlchemy Connection in autocommit, where store_events is one
    statement and so its own transaction (durable when it returns, synchronous_commit as
    configured) with no BEGIN and COMMIT round trips; on SQLite the pool's sqlite3 connection
    itself (the engine's PRAGMAs applied), each batch BEGIN IMMEDIATE .. COMMIT on it with no
    Session, its checkpoints handed to a WalCheckpointer."""
    if runtime.engine.dialect.name == "postgresql":
        return runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    connection = runtime.engine.raw_connection()
    hand_off_checkpoints(connection.driver_connection)
    return connection


def close_writer_connection(runtime: Runtime, connection: Any) -> None:
    """Back to the pool (which rolls back whatever a failed batch left open), on SQLite with
    SQLite's own checkpoints again, as the pool's other users expect."""
    with contextlib.suppress(Exception):
        if runtime.engine.dialect.name != "postgresql":
            restore_checkpoints(connection.driver_connection)
        connection.close()


def write_batch(runtime: Runtime, connection: Any, events: list[dict[str, Any]], lock_path: str | None,
                holder: Any, *, count: bool = True) -> list[str]:
    """Store one batch on a writer's connection (open_writer_connection), in its turn on SQLite:
    the outcomes once it is committed. `count=False`: not in this process's /metrics."""
    if runtime.engine.dialect.name == "postgresql":
        return store_events(runtime, events, source="webhook", connection=connection, count=count)
    with writer_turn(lock_path, holder):
        return store_events(runtime, events, source="webhook", sqlite_connection=connection.driver_connection,
                            count=count)


@contextlib.contextmanager
def writer_turn(lock_path: str | None, holder: Any) -> Iterator[None]:
    """On SQLite, receiver processes (serve-webhooks --workers, and their writer processes) take
    turns through a file lock: a blocked writer wakes the moment the other commits, instead of
    SQLite's busy handler sleeping (up to 100 ms a try) while it waits for the write lock.
    `holder` keeps the open lock file between batches (its `lock_file` attribute)."""
    if lock_path is None:
        yield
        return
    lock_file = getattr(holder, "lock_file", None)
    if lock_file is None:
        lock_file = holder.lock_file = open(lock_path, "a+b")  # noqa: SIM115 (kept by its holder)
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)


class _LoopWaiter:
    """A request waiting on an event loop (InboxWriter.store): its asyncio future is settled on
    its loop; a request that gave up (cancelled) is skipped then, its event stored anyway."""

    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[str] = loop.create_future()

    def set_running_or_notify_cancel(self) -> bool:
        return True


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)


def _answer_all(answers: list[tuple[asyncio.Future[str], str]]) -> None:
    for future, outcome in answers:
        if not future.done():
            future.set_result(outcome)


def _fail(future: asyncio.Future[str], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def sqlite_database_path(engine: Any) -> str | None:
    """The file of a SQLite file database, else None (PostgreSQL, or SQLite in memory)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return str(url.database)


def writer_lock_path(engine: Any) -> str | None:
    """The file SQLite writers take turns on (writer_turn), else None."""
    database = sqlite_database_path(engine)
    return f"{database}.writer-lock" if database else None


def _settle(future: Future[str] | _LoopWaiter, *, outcome: str | None = None,
            error: Exception | None = None) -> None:
    if isinstance(future, _LoopWaiter):
        if error is not None:
            _call_soon(future.loop, _fail, future.future, error)
        else:
            _call_soon(future.loop, _answer_all, [(future.future, outcome or "")])
        return
    if future.cancelled():  # cancelled while queued: nobody is waiting for the answer
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outcome or "")


