"""The receiver's writer process (webhooks/writer_process.py), what serve-webhooks runs: over
real HTTP on SQLite and PostgreSQL, each delivery is answered only after the child committed
it, with its own outcome; one event the database refuses fails alone; a child that dies fails
what it had not answered (500, so Stripe redelivers, stored once) and the next delivery starts
a new one; on shutdown the child exits."""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from services import metric_points, prometheus
from tests.conftest import TEST_WEBHOOK_SECRETS
from tests.integration.inbox_rows import metric_count, stored_events
from webhooks.app import ReceiverApp, create_app


def _event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": "invoice.paid", "created": int(time.time()), "livemode": False,
            "data": {"object": {"id": f"in_{event_id}", "object": "invoice"}}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(runtime: Any) -> Iterator[tuple[str, ReceiverApp]]:
    app = create_app(runtime, writer_process=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}/billing/webhook", app
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _deliver(url: str, event: dict[str, Any]) -> httpx.Response:
    body = json.dumps(event).encode()
    ts = int(time.time())
    signature = f"t={ts},v1=" + hmac.new(TEST_WEBHOOK_SECRETS[0].encode(), f"{ts}.".encode() + body,
                                         hashlib.sha256).hexdigest()
    return httpx.post(url, content=body, headers={"Stripe-Signature": signature}, timeout=30)


def test_concurrent_deliveries_through_the_writer_process(runtime_factory: Any, database_url: str) -> None:
    """32 clients at once: 16 distinct events, each delivered twice."""
    runtime = runtime_factory(DATABASE_URL=database_url)
    received_before = prometheus.WEBHOOK_RECEIVED._value.get()
    with serving(runtime) as (url, app):
        assert app.process_writer is not None and app.process_writer.pid not in (None, os.getpid())
        barrier = threading.Barrier(32)

        def deliver(index: int) -> tuple[int, str]:
            barrier.wait()
            response = _deliver(url, _event(f"evt_proc_{index % 16}"))
            return response.status_code, response.json()["status"]

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(deliver, range(32)))
        child = app.process_writer.pid
    assert {code for code, _ in answers} == {200}
    assert sorted(status for _, status in answers) == ["duplicate"] * 16 + ["stored"] * 16
    stored = stored_events(runtime)
    assert len(stored) == 16 and all(value == ("pending", 1) for value in stored.values())
    assert metric_count(runtime, metric_points.WEBHOOK_RECEIVED) == 32
    assert metric_count(runtime, metric_points.WEBHOOK_DUPLICATE) == 16
    # Counted in the receiver's own /metrics (the child counts nothing of its own).
    assert prometheus.WEBHOOK_RECEIVED._value.get() - received_before == 32
    # Shut down with the server: the child has exited.
    assert child is not None and not _alive(child)


def test_an_event_the_database_refuses_fails_alone(runtime_factory: Any, sqlite_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=sqlite_url)
    with sqlite3.connect(runtime.engine.url.database) as connection:
        connection.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON stripe_events WHEN NEW.id = 'evt_poison'"
                           " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    with serving(runtime) as (url, _app):
        barrier = threading.Barrier(3)

        def deliver(event_id: str) -> int:
            barrier.wait()
            return _deliver(url, _event(event_id)).status_code

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            codes = dict(zip(("evt_ok_a", "evt_poison", "evt_ok_b"),
                             pool.map(deliver, ("evt_ok_a", "evt_poison", "evt_ok_b")), strict=True))
        assert codes == {"evt_ok_a": 200, "evt_poison": 500, "evt_ok_b": 200}
        assert _deliver(url, _event("evt_after")).status_code == 200  # the child carried on
    # The refused one is not stored: Stripe retries it.
    assert sorted(stored_events(runtime)) == ["evt_after", "evt_ok_a", "evt_ok_b"]
    assert metric_count(runtime, metric_points.WEBHOOK_RECEIVED) == 3


def test_a_writer_process_that_dies_fails_what_it_had_then_a_new_one_stores(runtime_factory: Any,
                                                                             sqlite_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=sqlite_url)
    lock_path = f"{runtime.engine.url.database}.writer-lock"
    with serving(runtime) as (url, app):
        assert app.process_writer is not None
        assert _deliver(url, _event("evt_before")).status_code == 200
        first_child = app.process_writer.pid
        assert first_child is not None
        with open(lock_path, "a+b") as lock_file:
            # Hold the writers' turn: the child takes the delivery and waits for the lock.
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(_deliver, url, _event("evt_during"))
                time.sleep(0.5)
                assert not pending.done()  # not answered before a commit
                os.kill(first_child, signal.SIGKILL)
                assert pending.result(30).status_code == 500  # Stripe will redeliver it
            fcntl.flock(lock_file, fcntl.LOCK_UN)
        assert "evt_during" not in stored_events(runtime)
        redelivered = _deliver(url, _event("evt_during"))
        assert redelivered.status_code == 200 and redelivered.json()["status"] == "stored"
        assert app.process_writer.pid not in (None, first_child)
    assert sorted(stored_events(runtime)) == ["evt_before", "evt_during"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_an_in_memory_database_keeps_the_writer_threads(runtime_factory: Any) -> None:
    runtime = runtime_factory(DATABASE_URL="sqlite://")
    assert create_app(runtime, writer_process=True).process_writer is None  # another process cannot open it
