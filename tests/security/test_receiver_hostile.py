"""The webhook receiver under hostile input (issue #16, items 2, 6, 7 and 8's livemode part):
bodies over the cap while they stream, signature headers that do not parse, validly signed
events that do not fit the inbox, forged-signature floods, a locked database, and events from
the other Stripe mode. Each is refused with a 4xx, never a 5xx, and writes no event row."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from db.models import MetricPoint, StripeEvent
from services import metric_points, webhooks
from tests.conftest import TEST_WEBHOOK_SECRETS
from webhooks.rejections import RejectionCounter

PRIMARY = TEST_WEBHOOK_SECRETS[0]
CAP = webhooks.MAX_BODY_BYTES
PATH = "/billing/webhook"


def sign(body: bytes, secret: str = PRIMARY, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def event(event_id: str = "evt_hostile", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": event_id, "object": "event", "type": "invoice.paid", "created": int(time.time()),
                            "api_version": "2026-10-28.endive", "livemode": False,
                            "data": {"object": {"id": "in_hostile", "object": "invoice"}}}
    base.update(fields)
    return base


def make_runtime(url: str, **env: str) -> Any:
    from db.migrate import upgrade
    from services.config import load_settings
    from services.runtime import Runtime

    upgrade(url)
    values = {"DATABASE_URL": url, "STRIPE_API_BASE": "http://127.0.0.1:9",
              "STRIPE_WEBHOOK_SECRETS": ",".join(TEST_WEBHOOK_SECRETS), **env}
    return Runtime(load_settings(values, env_file=None))


@pytest.fixture
def receiver(database_url: str) -> Iterator[tuple[TestClient, Any]]:
    """The receiver app on SQLite and on PostgreSQL, lifespan running."""
    from webhooks.app import create_app

    runtime = make_runtime(database_url)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client, runtime


@pytest.fixture
def sqlite_receiver(sqlite_url: str) -> Iterator[tuple[TestClient, Any]]:
    from webhooks.app import create_app

    runtime = make_runtime(sqlite_url)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client, runtime


def stored_events(runtime: Any) -> int:
    with runtime.uow() as uow:
        return int(uow.session.execute(select(func.count()).select_from(StripeEvent)).scalar() or 0)


def metric(runtime: Any, name: str) -> tuple[int, int]:
    """(rows, summed value) of one metric."""
    with runtime.uow() as uow:
        rows, total = uow.session.execute(
            select(func.count(), func.coalesce(func.sum(MetricPoint.value), 0)).where(MetricPoint.name == name)
        ).one()
    return int(rows), int(total)


# --- 1. the body cap holds while the body streams ------------------------------------------
def _asgi_post(app: Any, headers: list[tuple[bytes, bytes]], chunk: bytes, total: int) -> tuple[int, dict[bytes, bytes],
                                                                                               int]:
    """POST through the raw ASGI interface with a receive() that hands out `total` bytes in
    chunks and counts what the app pulled: (status, response headers, bytes the app read)."""
    pulled = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= total:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
             "server": ("testserver", 80), "client": ("127.0.0.1", 5000)}
    # In a thread of its own: another test's Playwright (sync API) may own this thread's event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    start = next(m for m in messages if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"]), pulled


def test_a_chunked_body_over_the_cap_is_413_after_reading_at_most_the_cap(sqlite_receiver: Any) -> None:
    client, runtime = sqlite_receiver
    chunk = b"x" * 65536
    total = 64 * 1024 * 1024  # 64 MiB offered, no Content-Length (chunked)
    status, headers, pulled = _asgi_post(
        client.app, [(b"transfer-encoding", b"chunked"), (b"stripe-signature", sign(b"x").encode())], chunk, total)
    assert status == 413 and headers.get(b"connection") == b"close"
    assert pulled <= CAP + len(chunk) < total  # the receiver stopped reading at the cap
    assert stored_events(runtime) == 0


def test_a_declared_content_length_over_the_cap_is_413_without_reading(sqlite_receiver: Any) -> None:
    client, runtime = sqlite_receiver
    status, headers, pulled = _asgi_post(client.app, [(b"content-length", str(CAP + 1).encode())],
                                         b"x" * 65536, CAP + 1)
    assert (status, headers.get(b"connection"), pulled) == (413, b"close", 0)
    huge = client.post(PATH, content=b"x" * (CAP + 1), headers={"Stripe-Signature": sign(b"x" * (CAP + 1))})
    assert huge.status_code == 413 and huge.json() == {"error": "body too large"}
    assert stored_events(runtime) == 0


def test_a_body_at_the_cap_is_still_read_and_verified(sqlite_receiver: Any) -> None:
    client, runtime = sqlite_receiver
    body = json.dumps(event("evt_at_cap", data={"object": {"id": "in_cap", "pad": ""}})).encode()
    body = body.replace(b'"pad": ""', b'"pad": "' + b"p" * (CAP - len(body)) + b'"')
    assert len(body) == CAP
    status, _, pulled = _asgi_post(client.app, [(b"stripe-signature", sign(body).encode())], body, len(body))
    assert status == 200 and pulled == CAP
    assert stored_events(runtime) == 1


@pytest.fixture
def live_server(sqlite_url: str) -> Iterator[tuple[int, Any]]:
    """The receiver under uvicorn with the options `serve-webhooks` uses."""
    import uvicorn

    from webhooks.app import create_app
    from webhooks.server import uvicorn_options

    runtime = make_runtime(sqlite_url, WEBHOOK_HEADER_TIMEOUT_SECONDS="1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options(runtime.settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield port, runtime
    server.should_exit = True
    thread.join(timeout=10)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def test_uvicorn_answers_413_before_the_chunked_body_ends_and_closes(live_server: tuple[int, Any]) -> None:
    port, runtime = live_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     f"Stripe-Signature: {sign(b'x')}\r\nContent-Type: application/json\r\n\r\n".encode())
        chunk = b"x" * 65536
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        # Twice the cap, and never the final 0-length chunk: a receiver that buffered the whole
        # body before answering would still be waiting, and recv() would time out.
        for _ in range(2 * CAP // len(chunk)):
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed already
        head = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"connection: close" in head.lower()
    assert stored_events(runtime) == 0


def test_an_idle_connection_is_closed_after_the_header_timeout(live_server: tuple[int, Any]) -> None:
    port, _ = live_server
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"POST /billing/webhook HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        assert sock.recv(1024) == b""  # closed by the server (WEBHOOK_HEADER_TIMEOUT_SECONDS=1)


def test_headers_over_the_limit_are_refused(live_server: tuple[int, Any]) -> None:
    port, _ = live_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /billing/webhook HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 40_000 + b"\r\n\r\n")
        head = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 400"), head[:200]


# --- 2. signature headers that do not parse: 400, counted as invalid ----------------------------
NOW = int(time.time())
MALFORMED_HEADERS: dict[str, bytes] = {
    "t of 400 digits": f"t={'9' * 400},v1={'0' * 64}".encode(),
    "t of 4,400 digits": f"t={'1' * 4400},v1={'0' * 64}".encode(),
    "t of 40,000 digits": f"t={'1' * 40_000},v1={'0' * 64}".encode(),
    "negative t": f"t=-{NOW},v1={'0' * 64}".encode(),
    "non-ASCII digits in t": f"t={NOW},v1={'0' * 64}".encode().replace(b"t=1", "t=\u0661".encode()),
    "non-ASCII v1": f"t={NOW},v1=".encode() + "\u00e9".encode() * 32,
    "latin-1 v1": f"t={NOW},v1=".encode() + b"\xff" * 64,
    "non-hex v1": f"t={NOW},v1={'z' * 64}".encode(),
    "short v1": f"t={NOW},v1=abc".encode(),
    "duplicate junk": f"t={NOW},t={NOW + 1},v1={'0' * 64},,=,v1,==,t".encode(),
    "junk only": b",,,===,,,",
    "over-long header": (f"t={NOW}," + f"v1={'0' * 64}," * 300).encode(),
}


@pytest.mark.parametrize("name", list(MALFORMED_HEADERS))
def test_a_signature_header_that_does_not_parse_is_400_and_counted(sqlite_receiver: Any, name: str) -> None:
    client, runtime = sqlite_receiver
    body = json.dumps(event("evt_hdr")).encode()
    response = client.post(PATH, content=body, headers={"Stripe-Signature": MALFORMED_HEADERS[name]})
    assert response.status_code == 400, response.text
    assert response.json()["error"] in webhooks.INVALID_SIGNATURE_REASONS
    client.app.state.rejections.flush()
    assert metric(runtime, metric_points.WEBHOOK_INVALID_SIGNATURE)[1] == 1
    assert stored_events(runtime) == 0


# --- 3. validly signed events that do not fit the inbox: 400, no row, on both databases ----------
def _deep_body(depth: int) -> bytes:
    head = json.dumps(event("evt_deep"))[:-3].encode()  # cut the closing '}}}' to nest inside data.object
    return head + b', "deep": ' + b"[" * depth + b"]" * depth + b"}}}"


def _raw(**fields: Any) -> bytes:
    return json.dumps(event(**fields)).encode()


HOSTILE_BODIES: dict[str, Callable[[], bytes]] = {
    "50k-deep JSON": lambda: _deep_body(50_000),
    "500-deep JSON": lambda: _deep_body(500),
    "created negative": lambda: _raw(created=-1),
    "created after year 9999": lambda: _raw(created=10**13),
    "created huge": lambda: _raw(created=10**30),
    "created a bool": lambda: _raw(created=True),
    "created a float": lambda: _raw(created=1.5e9),
    "id over 255 characters": lambda: _raw(event_id="evt_" + "a" * 300),
    "id not ASCII": lambda: _raw(event_id="evt_\u00e9t\u00e9"),
    "type over 255 characters": lambda: _raw(type="invoice." + "p" * 300),
    "object id over 255 characters": lambda: _raw(data={"object": {"id": "in_" + "a" * 300}}),
    "object id an object": lambda: _raw(data={"object": {"id": {"nested": "x" * 300}}}),
    "api_version an object": lambda: _raw(api_version={"v": 1}),
    "api_version over 64 characters": lambda: _raw(api_version="2026-10-28." + "x" * 100),
    "livemode a string": lambda: _raw(livemode="false"),
    "NUL in text": lambda: _raw(data={"object": {"id": "in_1", "description": "a\u0000b"}}),
    "lone surrogate": lambda: _raw(data={"object": {"id": "in_1"}}).replace(b'"in_1"', b'"in_1", "x": "\\ud800"'),
    "NaN": lambda: _raw(data={"object": {"id": "in_1"}}).replace(b'"in_1"', b'"in_1", "x": NaN'),
    "1e999": lambda: _raw(data={"object": {"id": "in_1"}}).replace(b'"in_1"', b'"in_1", "x": 1e999'),
    "integer over 64 bits": lambda: _raw(data={"object": {"id": "in_1", "amount": 2**70}}),
    "integer of 5,000 digits": lambda: _raw(data={"object": {"id": "in_1"}}).replace(
        b'"in_1"', b'"in_1", "x": ' + b"7" * 5000),
    "UTF-16 body": lambda: json.dumps(event("evt_utf16")).encode("utf-16"),
    "data.object a list": lambda: _raw(data={"object": []}),
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_a_signed_event_that_does_not_fit_is_400_with_no_row(receiver: Any, name: str) -> None:
    client, runtime = receiver
    body = HOSTILE_BODIES[name]()
    response = client.post(PATH, content=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert response.json()["error"] not in webhooks.INVALID_SIGNATURE_REASONS  # signed: not a forgery
    assert stored_events(runtime) == 0
    # The receiver is unharmed: the next genuine event is stored.
    good = json.dumps(event("evt_after")).encode()
    assert client.post(PATH, content=good, headers={"Stripe-Signature": sign(good)}).status_code == 200
    assert stored_events(runtime) == 1


# --- 5. floods of invalid signatures: counted in memory, written in batches, never blocking -----
def test_a_forged_flood_writes_a_handful_of_rows_and_counts_every_request(sqlite_receiver: Any) -> None:
    client, runtime = sqlite_receiver
    body = json.dumps(event("evt_flood")).encode()
    forged = sign(body, "whsec_attacker")
    for _ in range(1500):
        assert client.post(PATH, content=body, headers={"Stripe-Signature": forged}).status_code == 400
    client.app.state.rejections.flush()
    rows, total = metric(runtime, metric_points.WEBHOOK_INVALID_SIGNATURE)
    assert total == 1500
    assert rows <= 10  # one row per reason per flush (every 2 s), not one per request
    good = json.dumps(event("evt_valid_during_flood")).encode()
    assert client.post(PATH, content=good, headers={"Stripe-Signature": sign(good)}).status_code == 200


def test_forged_requests_do_not_wait_for_a_locked_database(sqlite_receiver: Any, sqlite_url: str) -> None:
    """Another process holding SQLite's write lock must not stall (or 5xx) the refusals."""
    import sqlite3

    client, runtime = sqlite_receiver
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        body = json.dumps(event("evt_locked")).encode()
        statuses = [client.post(PATH, content=body, headers={"Stripe-Signature": sign(body, "whsec_x")}).status_code
                    for _ in range(3)]
        metrics_page = client.get("/metrics")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert statuses == [400, 400, 400] and metrics_page.status_code == 200
    client.app.state.rejections.flush()
    assert metric(runtime, metric_points.WEBHOOK_INVALID_SIGNATURE)[1] == 3


def test_a_healthz_stuck_on_the_database_does_not_hold_up_other_requests(sqlite_receiver: Any,
                                                                          sqlite_url: str) -> None:
    """/healthz waits for the database in a thread: while it is stuck behind another process's
    write lock, refusals and /metrics are still answered (before it, not after)."""
    import sqlite3

    client, _ = sqlite_receiver
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    order: list[str] = []
    health: list[int] = []

    def check_health() -> None:
        health.append(client.get("/healthz").status_code)
        order.append("healthz")

    checker = threading.Thread(target=check_health)
    try:
        checker.start()
        time.sleep(0.5)  # let /healthz reach the locked database first
        body = json.dumps(event("evt_behind_healthz")).encode()
        forged = client.post(PATH, content=body, headers={"Stripe-Signature": sign(body, "whsec_x")})
        metrics_page = client.get("/metrics")
        order.append("others")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        checker.join(timeout=60)
    assert (forged.status_code, metrics_page.status_code) == (400, 200)
    assert order == ["others", "healthz"] and health == [200]


def test_counts_are_written_at_shutdown(sqlite_url: str) -> None:
    from webhooks.app import create_app

    runtime = make_runtime(sqlite_url)
    body = json.dumps(event("evt_shutdown")).encode()
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        for _ in range(5):
            client.post(PATH, content=body, headers={"Stripe-Signature": sign(body, "whsec_x")})
    assert metric(runtime, metric_points.WEBHOOK_INVALID_SIGNATURE)[1] == 5


def test_a_flush_the_database_refuses_keeps_its_counts(sqlite_url: str) -> None:
    from db.migrate import upgrade
    from services.config import load_settings
    from services.runtime import Runtime

    runtime = Runtime(load_settings({"DATABASE_URL": sqlite_url}, env_file=None))  # not migrated yet
    counter = RejectionCounter(runtime, flush_seconds=3600)
    for _ in range(4):
        counter.add(metric_points.WEBHOOK_INVALID_SIGNATURE, "no signature matches")
    assert counter.flush() == 0 and counter.pending() == 4  # no table: nothing written, nothing lost
    upgrade(sqlite_url)
    counter.close()
    assert counter.pending() == 0
    assert metric(runtime, metric_points.WEBHOOK_INVALID_SIGNATURE) == (1, 4)


# --- 6. events from the other Stripe mode ---------------------------------------------------------
@pytest.mark.parametrize(("console_mode", "livemode"), [("test", True), ("live", False)])
def test_an_event_from_the_other_mode_is_refused_counted_and_alerted(
        database_url: str, monkeypatch: pytest.MonkeyPatch, console_mode: str, livemode: bool) -> None:
    from services import observability
    from webhooks.app import create_app

    alerts: list[tuple[str, dict[str, str]]] = []
    monkeypatch.setattr(observability, "capture_alert",
                        lambda message, tags, level="warning": alerts.append((message, tags)))
    runtime = make_runtime(database_url, STRIPE_MODE=console_mode)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        for n in range(2):
            body = json.dumps(event(f"evt_other_mode_{n}", type="radar.early_fraud_warning.created",
                                    livemode=livemode)).encode()
            response = client.post(PATH, content=body, headers={"Stripe-Signature": sign(body)})
            assert response.status_code == 400 and response.json() == {"error": "livemode mismatch"}
            client.app.state.rejections.flush()
        same_mode = json.dumps(event("evt_same_mode", livemode=not livemode)).encode()
        assert client.post(PATH, content=same_mode, headers={"Stripe-Signature": sign(same_mode)}).status_code == 200
    with runtime.uow() as uow:
        assert [r.id for r in uow.session.execute(select(StripeEvent)).scalars()] == ["evt_same_mode"]
    assert metric(runtime, metric_points.WEBHOOK_LIVEMODE_MISMATCH)[1] == 2
    assert len(alerts) == 1 and alerts[0][1]["alert"] == "webhook_livemode_mismatch"


def test_an_other_mode_event_already_in_the_inbox_is_never_processed(database_url: str) -> None:
    """A row stored before the receiver refused other-mode events (or by hand) is set aside."""
    from db.models import FraudWarning

    runtime = make_runtime(database_url)
    live_efw = event("evt_live_efw", type="radar.early_fraud_warning.created", livemode=True,
                     data={"object": {"id": "issfr_live", "object": "radar.early_fraud_warning", "charge": "ch_live",
                                      "actionable": True, "fraud_type": "card_never_received", "livemode": True}})
    assert webhooks.store_events(runtime, [live_efw]) == ["stored"]
    assert webhooks.process_event(runtime, "evt_live_efw") is False
    with runtime.uow() as uow:
        row = uow.session.get(StripeEvent, "evt_live_efw")
        assert row is not None and row.status == "ignored" and "livemode mismatch" in (row.last_error or "")
        assert uow.session.execute(select(func.count()).select_from(FraudWarning)).scalar() == 0
    assert webhooks.process_pending(runtime) == 0
