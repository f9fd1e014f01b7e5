"""Webhook intake, dj-stripe style: verify, store once, then process.

A verified event is inserted into `stripe_events` by id in its own
transaction before anything acknowledges it; processing is separate and
claims the row with a conditional UPDATE, so several workers (or a replay
racing a retry) never apply an event twice, and a crash at any point leaves
the row pending or failed, never "seen and dropped". Handlers live in
`event_handlers.py` and are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Connection, func, or_, select, text, update

from db.models import MetricPoint, StripeEvent
from db.models.base import from_unix, utcnow
from db.session import UnitOfWork
from services import audit, metric_points, prometheus, webhook_counts, webhook_secrets
from services.audit import privileged
from services.config import CONSOLE_EVENT_TYPES, Settings
from services.errors import ConsoleError
from services.fast_json import dumps_text
from services.observability import scrub_text_and_emails
from services.runtime import Runtime

logger = logging.getLogger(__name__)

# Stripe's default tolerance for Stripe-Signature timestamps (stripe.Webhook.DEFAULT_TOLERANCE).
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024
# Stripe's header is `t=<unix seconds>,v1=<64 hex>[,v1=...][,v0=...]`: a few hundred characters.
# Anything much longer, or a timestamp with more digits than any real time, is refused unparsed
# (int() of 4,300+ digits raises, and of 309+ digits overflows the float tolerance check).
MAX_SIGNATURE_HEADER_CHARS = 4096
MAX_TIMESTAMP_DIGITS = 12
SIGNATURE_HEX_CHARS = 64
MAX_SIGNED_WITH = 16  # fingerprints recorded per event (13 characters each with the comma)
# Stored columns and PostgreSQL's limits: ids and types are indexed (a btree entry has a size
# limit), `created` must be a real date, and JSON text may hold neither NUL nor lone surrogates.
MAX_ID_CHARS = 255
MAX_API_VERSION_CHARS = 64
MAX_JSON_DEPTH = 128
MAX_UNIX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second Python's datetime holds
BIGINT_RANGE = range(-(2**63), 2**63)
# A claimed event whose worker died is retried once this lease runs out.
PROCESSING_LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
ERROR_TEXT_LIMIT = 500

# Reasons counted as invalid signatures (the Webhooks page, the first-24h board, the alert).
INVALID_SIGNATURE_REASONS = frozenset({
    "no signature matches", "timestamp outside the tolerance", "missing Stripe-Signature header",
    "malformed Stripe-Signature header",
})
LIVEMODE_MISMATCH = "livemode mismatch"


class SignatureError(ConsoleError):
    """The request is not a genuine, fresh Stripe event; `reason` (the message) is safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """`t=..,v1=..` -> (timestamp, v1 signatures). Whatever does not parse (too long, non-ASCII,
    a timestamp that is not a plain number, two timestamps, no usable v1) is malformed; v1 values
    that are not 64 hex digits can never match, so they are dropped."""
    malformed = SignatureError("malformed Stripe-Signature header")
    # Starlette decodes header bytes as latin-1, so non-ASCII bytes arrive as non-ASCII text.
    if len(header) > MAX_SIGNATURE_HEADER_CHARS or not header.isascii():
        raise malformed
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1" and len(value) == SIGNATURE_HEX_CHARS and _is_hex(value):
            signatures.append(value.lower())
    if len(timestamps) != 1 or not signatures:
        raise malformed
    stamp = timestamps[0]
    if not (0 < len(stamp) <= MAX_TIMESTAMP_DIGITS and stamp.isdigit()):
        raise malformed
    return int(stamp), signatures


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in value)


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """Check `Stripe-Signature: t=..,v1=..` against every secret (rotation) and
    every v1 (Stripe may send several), then parse the event and check it can be stored."""
    if not secrets:
        raise SignatureError("no webhook signing secret is configured")
    if len(payload) > MAX_BODY_BYTES:
        raise SignatureError("body too large")
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp, signatures = parse_signature_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    signed = f"{timestamp}.".encode() + payload
    expected = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    # Every secret that matches (during a secret roll Stripe signs with the old and the new one).
    matched = [secret for secret, e in zip(secrets, expected, strict=True)
               if any(hmac.compare_digest(e, s) for s in signatures)]
    if not matched:
        raise SignatureError("no signature matches")
    event = _parse_json(payload)
    check_event(event)
    # At most MAX_SIGNED_WITH keys are named, so the column (255 characters) always holds them.
    return VerifiedEvent(event, signed_with=",".join(webhook_secrets.fingerprint(m)
                                                     for m in matched[:MAX_SIGNED_WITH]))


# A run of 19+ digits may be an integer past 64 bits, which orjson would read as a float: such a
# body takes the standard library's path, which keeps it an int (refused as out of range).
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")


def _parse_json(payload: bytes) -> Any:
    """The body parsed (only after its signature verified): orjson for the common case; the
    standard library, which names the reason, for whatever orjson refuses or might read
    differently. Both refuse NaN/Infinity, numbers that overflow a double, invalid UTF-8 and a BOM."""
    if not _LONG_DIGIT_RUN.search(payload):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    try:
        # Stripe sends UTF-8; json.loads(bytes) would also guess UTF-16/32.
        return json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise SignatureError("body nests too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("body is not JSON") from None


class VerifiedEvent(dict[str, Any]):
    """A verified event (the parsed body, stored as it is) that also knows which configured
    secrets verified it, as fingerprints (`signed_with`, stored beside the payload, not in it)."""

    def __init__(self, event: dict[str, Any], *, signed_with: str) -> None:
        super().__init__(event)
        self.signed_with = signed_with


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _plain_id(value: Any, limit: int = MAX_ID_CHARS) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isascii() and value.isprintable()


def check_event(event: Any) -> None:
    """A signed body is stored only if it is an event the inbox can hold: the fields the storage
    path reads have the types and ranges Stripe documents, and nothing in it would make the
    database refuse the row (and so fail a whole batch). Raises SignatureError with the reason."""
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
        and type(event.get("created")) is int  # bool is an int too
    ):
        raise SignatureError("body is not a Stripe event")
    if not _plain_id(event["id"]):
        raise SignatureError("event id is not a Stripe id (printable ASCII, at most 255 characters)")
    if not _plain_id(event["type"]):
        raise SignatureError("event type is not a Stripe event type (printable ASCII, at most 255 characters)")
    if not 0 <= event["created"] <= MAX_UNIX_TIME:
        raise SignatureError("event created is out of range")
    if "livemode" in event and not isinstance(event["livemode"], bool):
        raise SignatureError("event livemode is not a boolean")
    api_version = event.get("api_version")
    if api_version is not None and not _plain_id(api_version, MAX_API_VERSION_CHARS):
        raise SignatureError("event api_version is not a Stripe API version")
    object_id = event["data"]["object"].get("id")
    if object_id is not None and object_id != "" and not _plain_id(object_id):
        raise SignatureError("event object id is not a Stripe id (printable ASCII, at most 255 characters)")
    problem = _unstorable_json(event)
    if problem:
        raise SignatureError(problem)


def _storable_text(value: str) -> bool:
    if "\x00" in value:  # PostgreSQL text and jsonb cannot hold NUL
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")  # lone surrogates (a JSON "\ud800") cannot be encoded
    except UnicodeEncodeError:
        return False
    return True


def _unstorable_json(value: Any) -> str | None:
    """Walk the parsed body without recursion; the first reason it cannot be stored, or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_JSON_DEPTH:
                return "body nests too deeply"
            for key, child in node.items():
                if not _storable_text(key):
                    return "body has text that cannot be stored (NUL or a lone surrogate)"
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_JSON_DEPTH:
                return "body nests too deeply"
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            if not _storable_text(node):
                return "body has text that cannot be stored (NUL or a lone surrogate)"
        elif isinstance(node, int) and not isinstance(node, bool) and node not in BIGINT_RANGE:
            return "body has a number out of range"
    return None


def livemode_matches(event: dict[str, Any], settings: Settings) -> bool:
    """A test-mode console takes only test-mode events and a live one only live events."""
    return bool(event.get("livemode", False)) == (settings.stripe_mode == "live")


def _object_id(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    value = obj.get("id")
    return str(value) if value else None


def store_events(runtime: Runtime, events: Sequence[dict[str, Any]], *, source: str = "webhook",
                 uow: UnitOfWork | None = None) -> list[str]:
    """Store verified events in one transaction; the outcome per event is stored | duplicate | ignored.

    Only a normal return means the rows are committed (the receiver answers 2xx after it);
    an exception means nothing was. A later copy of an id (a redelivery, or the same
    event twice in one batch) only bumps `duplicate_deliveries` and counts a duplicate.
    The batch is one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING id (the ids that
    went in), one UPDATE per id that was already there, and one INSERT of the metric points.
    `uow` lets the receiver's writer reuse its own connection."""
    allowed_types = runtime.settings.stripe_webhook_allowed_events
    now = utcnow()
    postgres = runtime.engine.dialect.name == "postgresql"
    rows: list[dict[str, Any]] = []
    first_copy: dict[str, int] = {}
    for index, event in enumerate(events):
        if event["id"] in first_copy:
            continue
        first_copy[event["id"]] = index
        rows.append({
            "id": event["id"], "type": event["type"], "created": from_unix(event["created"]) or now,
            "livemode": bool(event.get("livemode")), "api_version": event.get("api_version"),
            "payload_json": None if postgres else dumps_text(event), "source": source, "received_at": now,
            "status": "pending" if event["type"] in allowed_types else "ignored",
            "object_id": _object_id(event), "attempts": 0, "duplicate_deliveries": 0,
            # Which configured secrets verified it (fingerprints; the webhook delivery log shows them).
            "signed_with": getattr(event, "signed_with", None),
        })
    with uow or runtime.uow() as unit:
        if postgres:
            firsts = [events[index] for index in first_copy.values()]
            inserted = _insert_events_postgres(unit, firsts, rows, source=source, received_at=now)
        else:
            from services import sqlite_bulk

            inserted = sqlite_bulk.insert_events(unit.session, rows, [row["payload_json"] for row in rows])
        outcomes: list[str] = []
        copies: dict[str, int] = {}
        metric_rows: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            if first_copy[event["id"]] == index and event["id"] in inserted:
                outcomes.append("stored" if event["type"] in allowed_types else "ignored")
            else:
                outcomes.append("duplicate")
                copies[event["id"]] = copies.get(event["id"], 0) + 1
            # What counts as received, duplicate, ignored or backfilled: services/webhook_counts.py.
            metric_rows += webhook_counts.delivery_metric_rows(event, outcomes[-1], source=source, at=now)
        for event_id, count in copies.items():
            unit.session.execute(update(StripeEvent).where(StripeEvent.id == event_id)
                                 .values(duplicate_deliveries=StripeEvent.duplicate_deliveries + count))
        metric_points.record_metrics(unit, metric_rows)
        unit.commit()
    webhook_counts.count_in_process(outcomes, source=source)
    return outcomes


# PostgreSQL: the whole batch as one JSON document read by json_to_recordset(): one short statement
# whatever the batch size (psycopg prepares it once), one orjson call to encode it, and PostgreSQL
# parses it in C (a multi-row VALUES would be a new, long query text per batch size, and text
# arrays make psycopg escape every quote of every payload in Python).
_INSERT_EVENTS_POSTGRES = text(
    "INSERT INTO stripe_events (id, type, created, livemode, api_version, payload, source, received_at, status,"
    " object_id, attempts, duplicate_deliveries, signed_with)"
    " SELECT u.id, u.type, u.created, u.livemode, u.api_version, u.payload, :source, :received_at,"
    " u.status, u.object_id, 0, 0, u.signed_with"
    " FROM json_to_recordset(CAST(:batch AS json)) AS u(id varchar, type varchar, created timestamptz,"
    " livemode boolean, api_version varchar, payload json, status varchar, object_id varchar,"
    " signed_with varchar)"
    " ON CONFLICT DO NOTHING RETURNING id"
)


def _insert_events_postgres(unit: UnitOfWork, events: list[dict[str, Any]], rows: list[dict[str, Any]], *,
                            source: str, received_at: datetime) -> set[str]:
    batch = [{"id": row["id"], "type": row["type"], "created": row["created"], "livemode": row["livemode"],
              "api_version": row["api_version"], "payload": event, "status": row["status"],
              "object_id": row["object_id"], "signed_with": row["signed_with"]}
             for event, row in zip(events, rows, strict=True)]
    params = {"batch": dumps_text(batch), "source": source, "received_at": received_at}
    return set(unit.session.execute(_INSERT_EVENTS_POSTGRES, params).scalars())


def ingest_event(runtime: Runtime, event: dict[str, Any], *, source: str = "webhook",
                 process: bool | None = None) -> str:
    """Store a verified event once. Returns stored | duplicate | ignored.

    `process` runs its effects right after the commit; by default webhooks do so only
    in inline mode (the demo) and backfilled events always do."""
    outcome = store_events(runtime, [event], source=source)[0]
    if process is None:
        process = runtime.settings.webhook_process_inline or source != "webhook"
    if outcome == "stored" and process:
        process_event(runtime, event["id"])
    return outcome


class InboxWriter:
    """Group commit for the receiver. Request handlers hand verified events to one writer
    thread, which stores everything waiting in one transaction and then resolves each
    request's future. Concurrent deliveries share a commit instead of queuing one by one
    for SQLite's write lock (whose busy handler sleeps up to 100 ms a turn) or for
    PostgreSQL's WAL flush; a lone delivery is written at once, never held back."""

    MAX_BATCH = 256

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], Future[str] | _LoopWaiter] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # The writer thread's own connection, kept between batches (no pool checkout or pre-ping
        # round trip per batch); dropped after any error, so the next batch starts on a fresh one.
        self._connection: Connection | None = None
        self._unit: UnitOfWork | None = None
        self._lock_path = _sqlite_writer_lock_path(runtime.engine)
        self._lock_file: Any = None

    def submit(self, event: dict[str, Any]) -> Future[str]:
        """The future resolves to the outcome once the row is committed, or to the error."""
        future: Future[str] = Future()
        self._enqueue(event, future)
        return future

    async def store(self, event: dict[str, Any]) -> str:
        """The outcome once the row is committed (or the error raised), for a caller on an event
        loop: the writer wakes each loop once per batch rather than once per request."""
        waiter = _LoopWaiter(asyncio.get_running_loop())
        self._enqueue(event, waiter)
        return await waiter.future

    def _enqueue(self, event: dict[str, Any], waiter: Future[str] | _LoopWaiter) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-inbox-writer", daemon=True)
                self._thread.start()
            self._queue.put((event, waiter))

    def close(self) -> None:
        """Store what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)
        thread.join()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._drop_connection()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stopping = False
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            for _, future in batch:
                # From here a request that gave up (client gone, server stopping) can no longer
                # cancel its future; its event is stored anyway and a redelivery is a duplicate.
                future.set_running_or_notify_cancel()
            self._store(batch)
            if stopping:
                return

    def _unit_of_work(self) -> UnitOfWork:
        if self._connection is None or self._unit is None:
            self._connection = self._runtime.engine.connect()
            self._unit = UnitOfWork(self._connection, audit_key=self._runtime.settings.audit_key_bytes)
        return self._unit

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """On SQLite, receiver processes (serve-webhooks --workers) take turns through a file lock:
        a blocked writer wakes the moment the other commits, instead of SQLite's busy handler
        sleeping (up to 100 ms a try) while it waits for the write lock."""
        if self._lock_path is None:
            yield
            return
        if self._lock_file is None:
            self._lock_file = open(self._lock_path, "a+b")  # noqa: SIM115 (kept open by the writer thread)
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _drop_connection(self) -> None:
        self._unit = None
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _store(self, batch: list[tuple[dict[str, Any], Future[str] | _LoopWaiter]]) -> None:
        try:
            with self._turn():
                outcomes = store_events(self._runtime, [event for event, _ in batch], source="webhook",
                                        uow=self._unit_of_work())
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


def _sqlite_writer_lock_path(engine: Any) -> str | None:
    """`<database file>.writer-lock` for a SQLite file database, else None."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return f"{url.database}.writer-lock"


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


def record_invalid_signature(runtime: Runtime, reason: str) -> None:
    """One invalid signature, written at once (tools and tests); the receiver batches them
    through `RejectionCounter` instead."""
    prometheus.WEBHOOK_DELIVERIES.labels("invalid_signature").inc()
    with runtime.uow() as uow:
        metric_points.record_metric(uow, metric_points.WEBHOOK_INVALID_SIGNATURE, tags={"reason": reason})
        uow.commit()


class RejectionCounter:
    """Counts refused deliveries (invalid signatures, livemode mismatches) in memory and writes
    them in batches from a background thread: one metric row per (metric, reason) per flush, whose
    `value` is the count, so a flood neither writes a row per request nor puts a DB call on the
    event loop. `add` only takes a lock. A flush the DB refuses keeps its counts for the next one.
    Livemode mismatches also raise an alert (Sentry), at most once per ALERT_EVERY_SECONDS."""

    FLUSH_SECONDS = 2.0
    ALERT_EVERY_SECONDS = 3600.0

    def __init__(self, runtime: Runtime, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._runtime = runtime
        self._flush_seconds = flush_seconds
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._alert_due = False
        self._last_alert: float | None = None

    def add(self, name: str, reason: str) -> None:
        with self._lock:
            self._counts[(name, reason)] = self._counts.get((name, reason), 0) + 1
            if name == metric_points.WEBHOOK_LIVEMODE_MISMATCH:
                self._alert_due = True
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="webhook-rejection-counter", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def flush(self) -> int:
        """Write what was counted since the last flush; returns how many deliveries it covered."""
        with self._flush_lock:
            with self._lock:
                counts, self._counts = self._counts, {}
                alert, self._alert_due = self._alert_due, False
            if alert:
                self._maybe_alert(counts)
            if not counts:
                return 0
            now = utcnow()
            rows = [metric_points.metric_row(name, at=now, value=n, tags={"reason": reason})
                    for (name, reason), n in counts.items()]
            try:
                with self._runtime.uow() as uow:
                    metric_points.record_metrics(uow, rows)
                    uow.commit()
            except Exception as error:  # the DB is busy or down: keep the counts for the next flush
                logger.warning("could not record %d refused deliveries: %s", sum(counts.values()),
                               error.__class__.__name__)
                with self._lock:
                    for key, n in counts.items():
                        self._counts[key] = self._counts.get(key, 0) + n
                return 0
            return sum(counts.values())

    def close(self) -> None:
        """Stop the thread and write what is left."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()

    def _maybe_alert(self, counts: dict[tuple[str, str], int]) -> None:
        from services.observability import capture_alert

        now = time.monotonic()
        if self._last_alert is not None and now - self._last_alert < self.ALERT_EVERY_SECONDS:
            return
        self._last_alert = now
        refused = sum(n for (name, _), n in counts.items() if name == metric_points.WEBHOOK_LIVEMODE_MISMATCH)
        mode = self._runtime.settings.stripe_mode
        capture_alert(f"Webhook events from the other Stripe mode were refused ({refused} since the last "
                      f"check); this console runs in {mode} mode. Check the endpoint's signing secret.",
                      {"alert": "webhook_livemode_mismatch", "stripe_mode": mode}, level="error")


def _claim(runtime: Runtime, event_id: str, now: datetime) -> bool:
    """Take the event for processing; False if another worker has it or it is done."""
    with runtime.uow() as uow:
        claimed = uow.session.execute(
            update(StripeEvent)
            .where(
                StripeEvent.id == event_id,
                or_(
                    StripeEvent.status.in_(("pending", "failed")),
                    (StripeEvent.status == "processing") & (StripeEvent.next_attempt_at <= now),
                ),
            )
            .values(status="processing", attempts=StripeEvent.attempts + 1, next_attempt_at=now + PROCESSING_LEASE)
        ).rowcount  # type: ignore[attr-defined]
        uow.commit()
    return bool(claimed)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def process_event(runtime: Runtime, event_id: str, *, now: datetime | None = None, respect_switch: bool = True) -> bool:
    """Apply one stored event's effects; True when it is processed. While the `processing`
    kill switch is on the event stays stored, unclaimed, in the backlog."""
    from services.event_handlers import handle_event
    from services.switches import switch_state

    moment = now or utcnow()
    if respect_switch and switch_state(runtime.uow(), "processing").paused:
        return False
    if not _claim(runtime, event_id, moment):
        return False
    try:
        with runtime.uow() as uow:
            row = uow.session.get(StripeEvent, event_id)
            assert row is not None
            if row.livemode != (runtime.settings.stripe_mode == "live"):
                # Stored before the receiver refused other-mode events, or by hand: never applied.
                row.status = "ignored"
                row.last_error = f"{LIVEMODE_MISMATCH}: the event is from the other Stripe mode"
                row.next_attempt_at = None
                uow.commit()
                prometheus.EVENTS_PROCESSED.labels("ignored").inc()
                return False
            # Backfilled events are followed by a full list pass, so they skip the re-reads.
            handle_event(uow, row.payload, runtime, refetch=row.source != "sync")
            row.status = "processed"
            row.processed_at = utcnow()
            row.last_error = None
            row.next_attempt_at = None
            uow.commit()
    except Exception as error:  # any handler failure keeps the event for a retry
        message = scrub_text_and_emails(f"{error.__class__.__name__}: {getattr(error, 'message', None) or error}")
        logger.warning("processing %s failed: %s", event_id, message)
        with runtime.uow() as uow:
            row = uow.session.get(StripeEvent, event_id)
            if row is not None:
                row.status = "failed"
                row.last_error = message[:ERROR_TEXT_LIMIT]
                row.next_attempt_at = utcnow() + _backoff(row.attempts)
                uow.commit()
        prometheus.EVENTS_PROCESSED.labels("failed").inc()
        return False
    prometheus.EVENTS_PROCESSED.labels("processed").inc()
    return True


def process_pending(runtime: Runtime, *, limit: int = 100, now: datetime | None = None) -> int:
    """Process due events oldest first (pending, failed past their backoff, expired claims);
    nothing while the `processing` kill switch is on (checked once per batch)."""
    from services.switches import switch_state

    moment = now or utcnow()
    if switch_state(runtime.uow(), "processing").paused:
        return 0
    with runtime.uow() as uow:
        due = list(
            uow.session.execute(
                select(StripeEvent.id)
                .where(
                    or_(
                        StripeEvent.status == "pending",
                        StripeEvent.status.in_(("failed", "processing")) & (StripeEvent.next_attempt_at <= moment),
                    )
                )
                .order_by(StripeEvent.created, StripeEvent.id)
                .limit(limit)
            ).scalars()
        )
    return sum(1 for event_id in due if process_event(runtime, event_id, now=moment, respect_switch=False))


@privileged("webhooks.replay")
def replay_event(event_id: str, *, actor: str, settings: Settings, uow: UnitOfWork, runtime: Runtime) -> bool:
    """Run a stored event's handlers again (failed ones, or any on request). Handlers are
    idempotent, so replaying a processed event changes nothing."""
    from services.switches import refuse_if_paused

    refuse_if_paused(uow, "processing", actor=actor, action="webhooks.replay")
    with uow:
        row = uow.session.get(StripeEvent, event_id)
        if row is None:
            audit.record(uow, actor=actor, action="webhooks.replay", result="refused", target=event_id,
                         error="no such event")
            uow.commit()
            raise LookupError(f"No stored event {event_id}.")
        if row.status == "ignored":
            audit.record(uow, actor=actor, action="webhooks.replay", result="refused", target=event_id,
                         error="event type not in STRIPE_WEBHOOK_ALLOWED_EVENTS")
            uow.commit()
            raise ValueError("This event type is not in the allow-list, so it has no effects to replay.")
        row.status = "pending"
        row.next_attempt_at = None
        uow.commit()
    processed = process_event(runtime, event_id)
    with uow:
        row = uow.session.get(StripeEvent, event_id)
        audit.record(uow, actor=actor, action="webhooks.replay", target=event_id,
                     idempotency_key=f"replay:{event_id}:{row.attempts if row else 0}",
                     result="ok" if processed else "error",
                     error=None if processed or row is None else row.last_error)
        uow.commit()
    return processed


# --- endpoint housekeeping ------------------------------------------------------------------
def _same_path(a: str, b: str) -> bool:
    return urlsplit(a).path.rstrip("/") == urlsplit(b).path.rstrip("/")


def prune_webhook_endpoints(runtime: Runtime, *, url: str, apply: bool, actor: str) -> list[str]:
    """Endpoints that duplicate or shadow the console's: the same URL registered twice,
    or the same path on another host/scheme (an old deployment)."""
    # Stripe lists newest first; keep the oldest registration for the URL.
    endpoints = sorted(reversed(runtime.gateway.list_webhook_endpoints()), key=lambda e: e.get("created", 0))
    keep = next((e for e in endpoints if e["url"] == url), None)
    stale = [e for e in endpoints if e is not keep and (e["url"] == url or _same_path(e["url"], url))]
    lines = [f"Keeping {keep['id']} {keep['url']}" if keep else f"No endpoint is registered for {url}."]
    if not stale:
        lines.append("Nothing to prune.")
        return lines
    for endpoint in stale:
        why = "duplicate of the console URL" if endpoint["url"] == url else "same path on another host"
        if not apply:
            lines.append(f"Would delete {endpoint['id']} {endpoint['url']} ({why})")
            continue
        runtime.gateway.delete_webhook_endpoint(endpoint["id"])
        with runtime.uow() as uow:
            audit.record(uow, actor=actor, action="webhooks.prune", target=endpoint["id"], result="ok",
                         details={"url": endpoint["url"], "why": why})
            uow.commit()
        lines.append(f"Deleted {endpoint['id']} {endpoint['url']} ({why})")
    if not apply:
        lines.append("Dry run: nothing deleted. Re-run with --apply to delete.")
    return lines


@dataclass(frozen=True)
class EndpointCheck:
    url: str | None
    endpoint_id: str | None
    enabled: bool
    missing_events: list[str]
    duplicates: int
    error: str | None = None


def endpoint_registration_check(runtime: Runtime) -> EndpointCheck:
    settings: Settings = runtime.settings
    url = settings.console_webhook_url
    needed = sorted(set(CONSOLE_EVENT_TYPES) | set(settings.stripe_webhook_allowed_events))
    try:
        endpoints = runtime.gateway.list_webhook_endpoints()
    except Exception as error:  # the page shows the reason instead of failing
        return EndpointCheck(url, None, False, needed, 0, getattr(error, "message", str(error)))
    matching = [e for e in endpoints if url and e["url"] == url]
    if not matching:
        return EndpointCheck(url, None, False, needed, 0, "no endpoint is registered for this URL")
    endpoint = matching[0]
    enabled_events = set(endpoint.get("enabled_events") or [])
    missing = [] if "*" in enabled_events else [e for e in needed if e not in enabled_events]
    return EndpointCheck(url, endpoint["id"], endpoint.get("status") == "enabled", missing, len(matching) - 1)


# --- read models for the page and /healthz ------------------------------------------------------
def last_event_age_seconds(uow: UnitOfWork, now: datetime | None = None) -> float | None:
    with uow:
        last = uow.session.execute(select(func.max(StripeEvent.received_at))).scalar()
    if last is None:
        return None
    return ((now or utcnow()) - last).total_seconds()


def metric_totals(uow: UnitOfWork, names: Sequence[str], *, since: datetime) -> dict[str, int]:
    with uow:
        rows = uow.session.execute(
            select(MetricPoint.name, func.coalesce(func.sum(MetricPoint.value), 0))
            .where(MetricPoint.name.in_(list(names)), MetricPoint.at >= since)
            .group_by(MetricPoint.name)
        ).all()
    totals = {name: 0 for name in names}
    totals.update({name: int(total) for name, total in rows})
    return totals


def status_counts(uow: UnitOfWork) -> dict[str, int]:
    with uow:
        rows = uow.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all()
    return {status: int(count) for status, count in rows}


def unprocessed_events(uow: UnitOfWork, *, limit: int = 200) -> list[dict[str, Any]]:
    with uow:
        rows = uow.session.execute(
            select(StripeEvent)
            .where(StripeEvent.status.in_(("failed", "pending", "processing")))
            .order_by(StripeEvent.created.desc())
            .limit(limit)
        ).scalars()
        return [
            {"id": r.id, "type": r.type, "status": r.status, "attempts": r.attempts, "last_error": r.last_error,
             "created": r.created, "next_attempt_at": r.next_attempt_at}
            for r in rows
        ]
