"""WAL checkpoints off a writer's commit path (SQLite).

By default SQLite checkpoints inside a commit: the commit that takes the WAL past 1,000 pages
also copies every page back into the database file and syncs both, holding the writer (and, in
the receiver, every delivery in its batch) for milliseconds. A writer that commits all the time
hands that job to a WalCheckpointer instead: a thread with its own connection that runs a
PASSIVE checkpoint (it never blocks a writer or a reader) whenever the WAL file has grown past
`threshold_bytes`. SQLite does the copying in C without the interpreter lock, so it runs beside
the writer rather than inside it. The writer's own connection keeps a backstop: it still
checkpoints itself at BACKSTOP_PAGES, should this thread fall behind or stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

# The writer's connection checkpoints itself only past this many WAL pages (about 40 MB at 4 KiB).
BACKSTOP_PAGES = 10_000
# A file's mtime comes from a coarse clock (a few ms a tick): a checkpoint that began this long
# after the WAL's last write surely saw all of it.
_SETTLED_NS = 50_000_000


def hand_off_checkpoints(dbapi_connection: Any) -> None:
    """On a writer's own sqlite3 connection: leave checkpoints to a WalCheckpointer (up to the backstop)."""
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")


def restore_checkpoints(dbapi_connection: Any) -> None:
    """SQLite's default again (1,000 pages), e.g. before the connection goes back to a pool."""
    with contextlib.suppress(sqlite3.Error):
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=1000")


class WalCheckpointer:
    """Checkpoints `database`'s WAL from a thread of its own while it is past `threshold_bytes`
    and holds frames no checkpoint has copied yet (checked every `interval` seconds, one stat()
    each): it is skipped only when the WAL has not been written since a checkpoint that copied
    every frame and began well after that write. After a complete checkpoint the next writer
    starts the WAL file over from its first frame, but the file keeps its size: under steady
    writes this checkpoints every interval (a few hundred frames at a time), and not at all once
    nothing is written."""

    def __init__(self, database: str, *, threshold_bytes: int = 4 * 1024 * 1024, interval: float = 0.02,
                 busy_timeout_ms: int = 30_000) -> None:
        self.database = database
        self.threshold_bytes = threshold_bytes
        self.interval = interval
        self.busy_timeout_ms = busy_timeout_ms
        self.checkpoints = 0  # completed checkpoint calls (for tests and the curious)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpointer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        wal = f"{self.database}-wal"
        connection: sqlite3.Connection | None = None
        covered_mtime: int | None = None  # the WAL's mtime when a checkpoint last copied all of it
        try:
            while not self._stop.wait(self.interval):
                try:
                    stat = os.stat(wal)
                except FileNotFoundError:
                    continue
                if stat.st_size <= self.threshold_bytes or stat.st_mtime_ns == covered_mtime:
                    continue
                try:
                    if connection is None:
                        connection = sqlite3.connect(self.database, isolation_level=None,
                                                     timeout=self.busy_timeout_ms / 1000, check_same_thread=False)
                    started = time.time_ns()
                    busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    complete = busy == 0 and frames == copied and started - stat.st_mtime_ns > _SETTLED_NS
                    covered_mtime = stat.st_mtime_ns if complete else None
                except sqlite3.Error as error:  # the writer's backstop still checkpoints; try again later
                    logger.warning("WAL checkpoint of the database failed: %s", type(error).__name__)
                    if connection is not None:
                        with contextlib.suppress(sqlite3.Error):
                            connection.close()
                        connection = None
        finally:
            if connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
