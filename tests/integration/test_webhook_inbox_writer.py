"""The receiver's group commit (services.InboxWriter), on SQLite and PostgreSQL:
deliveries that arrive while a commit is in flight share the next one, each request still
learns its own outcome only after its row is committed, and one event the DB refuses does
not fail the others in its batch."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event as sa_event

from services import metric_points, webhooks
from tests.conftest import TEST_WEBHOOK_SECRETS
from tests.integration.inbox_rows import metric_count, stored_events
from webhooks.app import create_app
from webhooks.inbox_writer import InboxWriter


def _event(event_id: str, event_type: str = "invoice.paid") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()), "livemode": False,
            "data": {"object": {"id": f"in_{event_id}", "object": "invoice"}}}


class _CommitGate:
    """Counts commits and holds the first INSERT into stripe_events until released, so the
    test can queue deliveries while a commit is in flight. On PostgreSQL the writer's statements
    go through SQLAlchemy (engine events); on SQLite it runs them on the pool's sqlite3 connection
    itself, so the gate watches that connection's statements (sqlite3's trace callback runs as
    each one starts, on the thread running it)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.commits = 0
        self.first_insert_reached = threading.Event()
        self.release = threading.Event()
        self._traced: list[Any] = []
        sa_event.listen(engine, "commit", self._on_commit)
        sa_event.listen(engine, "before_cursor_execute", self._on_execute)
        if engine.dialect.name == "sqlite":
            sa_event.listen(engine.pool, "checkout", self._on_checkout)

    def _on_commit(self, _conn: Any) -> None:
        self.commits += 1

    def _on_execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # SQLite: INSERT INTO stripe_events ...; PostgreSQL: WITH batch AS (...) INSERT INTO stripe_events ...
        if "INSERT INTO stripe_events" in statement and not self.first_insert_reached.is_set():
            self.first_insert_reached.set()
            assert self.release.wait(10)

    def _on_checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        def trace(statement: str) -> None:
            if statement == "COMMIT":
                self.commits += 1
            self._on_execute(None, None, statement)

        dbapi_connection.set_trace_callback(trace)
        self._traced.append(dbapi_connection)

    def remove(self) -> None:
        sa_event.remove(self.engine, "commit", self._on_commit)
        sa_event.remove(self.engine, "before_cursor_execute", self._on_execute)
        if self.engine.dialect.name == "sqlite":
            sa_event.remove(self.engine.pool, "checkout", self._on_checkout)
        for connection in self._traced:
            with contextlib.suppress(Exception):
                connection.set_trace_callback(None)


@contextlib.contextmanager
def held_writer(runtime: Any, first_event_id: str) -> Iterator[tuple[InboxWriter, _CommitGate, Future[str]]]:
    """A writer whose first delivery is inside its transaction, held there until
    `gate.release` is set: what the test submits meanwhile queues behind that commit."""
    writer = InboxWriter(runtime, threads=1)  # one writer: what queues behind its commit shares the next
    gate = _CommitGate(runtime.engine)
    try:
        first = writer.submit(_event(first_event_id))
        assert gate.first_insert_reached.wait(10)
        yield writer, gate, first
    finally:
        gate.release.set()
        gate.remove()
        writer.close()


def test_deliveries_queued_behind_a_commit_share_the_next_one(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    with held_writer(runtime, "evt_first") as (writer, gate, first):
        # While that transaction is open, ten more arrive (one of them twice) and an ignored type.
        queued = [writer.submit(_event(f"evt_q{i}")) for i in range(10)]
        again = writer.submit(_event("evt_q3"))
        ignored = writer.submit(_event("evt_product", "product.created"))
        assert not first.done() and not any(f.done() for f in queued)  # nothing answered before its commit
        gate.release.set()
        assert first.result(10) == "stored"
        assert [f.result(10) for f in queued] == ["stored"] * 10
        assert again.result(10) == "duplicate" and ignored.result(10) == "ignored"
        assert gate.commits == 2  # the first delivery's commit, then one for the twelve queued behind it
    stored = stored_events(runtime)
    assert len(stored) == 12  # evt_first, ten queued, the ignored one
    assert stored["evt_q3"] == ("pending", 1) and stored["evt_product"] == ("ignored", 0)
    assert metric_count(runtime, metric_points.WEBHOOK_RECEIVED) == 13  # every verified delivery, the copy too
    assert metric_count(runtime, metric_points.WEBHOOK_DUPLICATE) == 1
    assert metric_count(runtime, metric_points.WEBHOOK_IGNORED) == 1


@pytest.mark.postgres
def test_on_postgresql_a_second_writer_commits_while_the_first_is_held(runtime_factory: Any,
                                                                      postgres_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=postgres_url)
    writer = InboxWriter(runtime)  # the default: several writer threads on PostgreSQL
    gate = _CommitGate(runtime.engine)
    try:
        first = writer.submit(_event("evt_held"))
        assert gate.first_insert_reached.wait(10)
        others = [writer.submit(_event(f"evt_free_{i}")) for i in range(5)]
        assert [f.result(10) for f in others] == ["stored"] * 5  # committed by the other writer meanwhile
        assert not first.done()
        gate.release.set()
        assert first.result(10) == "stored"
    finally:
        gate.release.set()
        gate.remove()
        writer.close()
    assert sorted(stored_events(runtime)) == ["evt_free_0", "evt_free_1", "evt_free_2", "evt_free_3", "evt_free_4",
                                        "evt_held"]
    assert metric_count(runtime, metric_points.WEBHOOK_RECEIVED) == 6


def test_an_event_the_database_refuses_fails_alone(runtime_factory: Any, database_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    real_object_id = webhooks._object_id

    def refuse_poison(event: dict[str, Any]) -> str | None:
        if event["id"] == "evt_poison":
            raise RuntimeError("the database refused this row")
        return real_object_id(event)

    monkeypatch.setattr(webhooks, "_object_id", refuse_poison)
    with held_writer(runtime, "evt_a") as (writer, gate, first):
        batch = [writer.submit(_event(event_id)) for event_id in ("evt_b", "evt_poison", "evt_c")]
        gate.release.set()
        assert first.result(10) == "stored"
        assert batch[0].result(10) == "stored" and batch[2].result(10) == "stored"
        with pytest.raises(RuntimeError, match="refused"):
            batch[1].result(10)
    # The poison event is not stored, so Stripe retries it.
    assert sorted(stored_events(runtime)) == ["evt_a", "evt_b", "evt_c"]
    assert metric_count(runtime, metric_points.WEBHOOK_RECEIVED) == 3


def test_a_request_that_gave_up_while_queued_is_still_stored(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    with held_writer(runtime, "evt_first") as (writer, gate, first):
        abandoned, waiting = writer.submit(_event("evt_abandoned")), writer.submit(_event("evt_waiting"))
        assert abandoned.cancel()  # the client disconnected while its delivery was queued
        gate.release.set()
        assert first.result(10) == "stored" and waiting.result(10) == "stored"
        assert writer.submit(_event("evt_later")).result(10) == "stored"  # the writer carried on
    assert sorted(stored_events(runtime)) == ["evt_abandoned", "evt_first", "evt_later", "evt_waiting"]


def test_close_stores_what_is_queued(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    writer = InboxWriter(runtime)
    futures = [writer.submit(_event(f"evt_close_{i}")) for i in range(50)]
    writer.close()
    assert all(f.done() for f in futures) and {f.result() for f in futures} == {"stored"}
    assert len(stored_events(runtime)) == 50
    # A closed writer starts a fresh thread on the next delivery.
    assert writer.submit(_event("evt_after_close")).result(10) == "stored"
    writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sign(body: bytes, secret: str) -> str:
    ts = int(time.time())
    return f"t={ts},v1=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def test_concurrent_http_deliveries_through_the_live_receiver(runtime_factory: Any, database_url: str) -> None:
    """32 clients at once over real HTTP: 16 distinct events, each delivered twice."""
    runtime = runtime_factory(DATABASE_URL=database_url)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        bodies = [json.dumps(_event(f"evt_http_{i % 16}")).encode() for i in range(32)]
        barrier = threading.Barrier(32)

        def deliver(body: bytes) -> tuple[int, str]:
            barrier.wait()
            response = httpx.post(f"http://127.0.0.1:{port}/billing/webhook", content=body,
                                  headers={"Stripe-Signature": _sign(body, TEST_WEBHOOK_SECRETS[0])}, timeout=30)
            return response.status_code, response.json()["status"]

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(deliver, bodies))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert {code for code, _ in answers} == {200}
    assert sorted(status for _, status in answers) == ["duplicate"] * 16 + ["stored"] * 16
    stored = stored_events(runtime)
    assert len(stored) == 16 and all(value == ("pending", 1) for value in stored.values())
    assert metric_count(runtime, metric_points.WEBHOOK_RECEIVED) == 32  # deliveries: 16 first copies + 16 copies
    assert metric_count(runtime, metric_points.WEBHOOK_DUPLICATE) == 16
