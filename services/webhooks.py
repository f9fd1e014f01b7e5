"""Webhook intake, dj-stripe style: verify, store once, then process.

A verified event is inserted into `stripe_events` by id in its own
transaction before anything acknowledges it; processing is separate and
claims the row with a conditional UPDATE, so several workers (or a replay
racing a retry) never apply an event twice, and a crash at any point leaves
the row pending or failed, never "seen and dropped". Handlers live in
`event_handlers.py` and are idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select, update

from db.models import MetricPoint, StripeEvent
from db.models.base import from_unix, utcnow
from db.session import UnitOfWork, insert_ignoring_conflicts
from services import audit, metric_points, prometheus, webhook_counts
from services.audit import privileged
from services.config import CONSOLE_EVENT_TYPES, Settings
from services.observability import scrub_text_and_emails

logger = logging.getLogger(__name__)

# Stripe's default tolerance for Stripe-Signature timestamps (stripe.Webhook.DEFAULT_TOLERANCE).
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024
# A claimed event whose worker died is retried once this lease runs out.
PROCESSING_LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
ERROR_TEXT_LIMIT = 500


class SignatureError(Exception):
    """The request is not a genuine, fresh Stripe event; `reason` is safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """Check `Stripe-Signature: t=..,v1=..` against every secret (rotation) and
    every v1 (Stripe may send several), then parse the event."""
    if not secrets:
        raise SignatureError("no webhook signing secret is configured")
    if len(payload) > MAX_BODY_BYTES:
        raise SignatureError("body too large")
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed Stripe-Signature header") from None
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("malformed Stripe-Signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    signed = f"{timestamp}.".encode() + payload
    expected = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise SignatureError("no signature matches")
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("body is not JSON") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
        and isinstance(event.get("created"), int)
    ):
        raise SignatureError("body is not a Stripe event")
    return event


def _object_id(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    value = obj.get("id")
    return str(value) if value else None


def store_events(runtime: Any, events: Sequence[dict[str, Any]], *, source: str = "webhook") -> list[str]:
    """Store verified events in one transaction; the outcome per event is stored | duplicate | ignored.

    Only a normal return means the rows are committed (the receiver answers 2xx after it);
    an exception means nothing was. A later copy of an id (a redelivery, or the same
    event twice in one batch) only bumps `duplicate_deliveries` and counts a duplicate."""
    allowed_types = runtime.settings.stripe_webhook_allowed_events
    outcomes: list[str] = []
    metric_rows: list[dict[str, Any]] = []
    with runtime.uow() as uow:
        insert_event = insert_ignoring_conflicts(uow.session, StripeEvent)
        for event in events:
            allowed = event["type"] in allowed_types
            now = utcnow()
            inserted = uow.session.execute(insert_event.values(
                id=event["id"], type=event["type"], created=from_unix(event["created"]) or now,
                livemode=bool(event.get("livemode")), api_version=event.get("api_version"), payload=event,
                source=source, received_at=now, status="pending" if allowed else "ignored",
                object_id=_object_id(event), attempts=0, duplicate_deliveries=0,
            ).returning(StripeEvent.id)).first()
            if inserted is None:
                uow.session.execute(
                    update(StripeEvent)
                    .where(StripeEvent.id == event["id"])
                    .values(duplicate_deliveries=StripeEvent.duplicate_deliveries + 1)
                )
                outcomes.append("duplicate")
            else:
                outcomes.append("stored" if allowed else "ignored")
            # What counts as received, duplicate, ignored or backfilled: services/webhook_counts.py.
            metric_rows += webhook_counts.delivery_metric_rows(event, outcomes[-1], source=source, at=now)
        metric_points.record_metrics(uow, metric_rows)
        uow.commit()
    webhook_counts.count_in_process(outcomes, source=source)
    return outcomes


def ingest_event(runtime: Any, event: dict[str, Any], *, source: str = "webhook", process: bool | None = None) -> str:
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

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], Future[str]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, event: dict[str, Any]) -> Future[str]:
        """The future resolves to the outcome once the row is committed, or to the error."""
        future: Future[str] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-inbox-writer", daemon=True)
                self._thread.start()
            self._queue.put((event, future))
        return future

    def close(self) -> None:
        """Store what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)
        thread.join()

    def _run(self) -> None:
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

    def _store(self, batch: list[tuple[dict[str, Any], Future[str]]]) -> None:
        try:
            outcomes = store_events(self._runtime, [event for event, _ in batch], source="webhook")
        except Exception as error:  # the requests answer 5xx, so Stripe redelivers
            if len(batch) > 1:
                # One event the DB refuses must not fail its neighbours: store each alone.
                for item in batch:
                    self._store([item])
                return
            _settle(batch[0][1], error=error)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome=outcome)


def _settle(future: Future[str], *, outcome: str | None = None, error: Exception | None = None) -> None:
    if future.cancelled():  # cancelled while queued: nobody is waiting for the answer
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outcome or "")


def record_invalid_signature(runtime: Any, reason: str) -> None:
    prometheus.WEBHOOK_DELIVERIES.labels("invalid_signature").inc()
    with runtime.uow() as uow:
        metric_points.record_metric(uow, metric_points.WEBHOOK_INVALID_SIGNATURE, tags={"reason": reason})
        uow.commit()


def _claim(runtime: Any, event_id: str, now: datetime) -> bool:
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
        ).rowcount
        uow.commit()
    return bool(claimed)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def process_event(runtime: Any, event_id: str, *, now: datetime | None = None) -> bool:
    """Apply one stored event's effects; True when it is processed."""
    from services.event_handlers import handle_event

    moment = now or utcnow()
    if not _claim(runtime, event_id, moment):
        return False
    try:
        with runtime.uow() as uow:
            row = uow.session.get(StripeEvent, event_id)
            assert row is not None
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


def process_pending(runtime: Any, *, limit: int = 100, now: datetime | None = None) -> int:
    """Process due events oldest first (pending, failed past their backoff, expired claims)."""
    moment = now or utcnow()
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
    return sum(1 for event_id in due if process_event(runtime, event_id, now=moment))


@privileged("webhooks.replay")
def replay_event(event_id: str, *, actor: str, settings: Settings, uow: UnitOfWork, runtime: Any) -> bool:
    """Run a stored event's handlers again (failed ones, or any on request). Handlers are
    idempotent, so replaying a processed event changes nothing."""
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


def prune_webhook_endpoints(runtime: Any, *, url: str, apply: bool, actor: str) -> list[str]:
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


def endpoint_registration_check(runtime: Any) -> EndpointCheck:
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


def deliveries_per_hour(uow: UnitOfWork, *, since: datetime) -> list[dict[str, Any]]:
    """Stored events per hour and type, grouped in SQL (portable hour bucket)."""
    with uow:
        dialect = uow.session.bind.dialect.name if uow.session.bind else "sqlite"
        if dialect == "postgresql":
            hour = func.date_trunc("hour", StripeEvent.received_at)
        else:
            hour = func.strftime("%Y-%m-%d %H:00", StripeEvent.received_at)
        rows = uow.session.execute(
            select(hour.label("hour"), StripeEvent.type, func.count())
            .where(StripeEvent.received_at >= since)
            .group_by("hour", StripeEvent.type)
            .order_by("hour")
        ).all()
    return [{"hour": str(h)[:16], "type": t, "events": int(n)} for h, t, n in rows]


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
