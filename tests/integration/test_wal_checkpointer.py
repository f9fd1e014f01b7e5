"""WAL checkpoints beside the writer (db/wal_checkpointer.py), on a real SQLite file: the
checkpointer copies committed pages into the database file while the writer's own connection
only keeps a backstop, and the receiver's writer runs it for as long as it writes."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event

from db.wal_checkpointer import BACKSTOP_PAGES, WalCheckpointer, hand_off_checkpoints, restore_checkpoints
from webhooks.inbox_writer import InboxWriter


def _rows_in_database_file(path: Path) -> int:
    """Rows the main database file holds by itself (immutable: the WAL is not read)."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as connection:
        return int(connection.execute("SELECT count(*) FROM items").fetchone()[0])


def _wait_for(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_the_checkpointer_moves_committed_pages_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the table itself in the database file
    hand_off_checkpoints(writer)
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES

    def commit_a_batch() -> None:  # about 40 pages of WAL, far below the backstop
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany("INSERT INTO items (body) VALUES (?)", [("x" * 4000,)] * 40)
        writer.execute("COMMIT")

    commit_a_batch()
    assert _rows_in_database_file(path) == 0  # committed, but only in the WAL: the writer left it there
    checkpointer = WalCheckpointer(str(path), threshold_bytes=64 * 1024, interval=0.005)
    checkpointer.start()
    try:
        for _ in range(39):
            commit_a_batch()

        def settled() -> bool:  # nothing written any more: the checkpointer leaves the WAL alone
            before = checkpointer.checkpoints
            time.sleep(0.1)
            return checkpointer.checkpoints == before

        assert _wait_for(settled)
    finally:
        checkpointer.stop()  # stopped before the file is read as immutable: nothing writes it meanwhile
    assert checkpointer.checkpoints >= 1
    assert _rows_in_database_file(path) == 1600
    restore_checkpoints(writer)
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    writer.close()


def test_a_stopped_checkpointer_can_start_again_and_a_missing_wal_is_no_error(tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(str(tmp_path / "never-created.db"), interval=0.005)
    checkpointer.start()
    time.sleep(0.05)
    checkpointer.stop()
    checkpointer.start()
    checkpointer.stop()
    assert checkpointer.checkpoints == 0


def test_the_receivers_writer_hands_its_checkpoints_to_the_thread(runtime_factory: Any, tmp_path: Path) -> None:
    runtime = runtime_factory(DATABASE_URL=f"sqlite:///{tmp_path / 'inbox.db'}")
    statements: list[str] = []

    def trace(dbapi_connection: Any, *_args: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    def checkpointer_threads() -> set[threading.Thread]:
        return {thread for thread in threading.enumerate() if thread.name == "sqlite-wal-checkpointer"}

    earlier = checkpointer_threads()  # other tests' writers may still have theirs
    sa_event.listen(runtime.engine.pool, "checkout", trace)
    writer = InboxWriter(runtime)
    try:
        futures = [writer.submit({"id": f"evt_ckpt_{i}", "object": "event", "type": "invoice.paid",
                                  "created": int(time.time()), "livemode": False,
                                  "data": {"object": {"id": f"in_{i}", "object": "invoice"}}}) for i in range(20)]
        assert {future.result(10) for future in futures} == {"stored"}
        assert f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}" in statements
        ours = checkpointer_threads() - earlier
        assert len(ours) == 1
    finally:
        writer.close()
        sa_event.remove(runtime.engine.pool, "checkout", trace)
    assert not any(thread.is_alive() for thread in ours)  # close() stops it
