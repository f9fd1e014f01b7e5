"""The webhook delivery log: every stored event with how it arrived and what became of it.

One row per event (the inbox keeps an event once by id; later copies only count as
deliveries). Filters and paging run in SQL on indexed columns (type, id, object id, status,
received_at). A payload is shown with its secrets redacted; a poison event can be marked
resolved with a reason (audited), after which the worker never retries it. The per-endpoint
chart tells endpoints apart by the signing secret that verified each delivery (every Stripe
endpoint has its own secret).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from db.models.base import utcnow
from db.repositories import metrics as metric_rows
from db.repositories import webhook_events
from db.repositories.hours import hour_label
from db.session import UnitOfWork
from services import audit, metric_points, webhook_secrets
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError
from services.observability import scrub_value
from services.redaction import redact_secret_fields
from services.runtime import Runtime

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
COUNT_CAP = 10_000
REASON_MIN_CHARS = 3
REASON_MAX_CHARS = 500
STATUSES = ("pending", "processing", "processed", "failed", "ignored", "resolved")
SOURCES = ("webhook", "backfill")
# What "mark resolved" may close: a failed event, one still waiting, or one whose worker died
# mid-run (an expired processing lease, e.g. a handler that crashes the process every time).
RESOLVABLE = ("failed", "pending", "processing")


class WebhookLogError(ConsoleError):
    """A log action was refused; the message says why (nothing changed)."""


@dataclass(frozen=True)
class LogFilter:
    types: tuple[str, ...] = ()
    # An event id or the id of the Stripe object the event is about (exact match).
    object_id: str | None = None
    statuses: tuple[str, ...] = ()
    source: str | None = None  # "webhook" | "backfill" | None (both)
    limit: int = PAGE_SIZE
    offset: int = 0


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    type: str
    object_id: str | None
    created: datetime
    received_at: datetime
    source: str
    signature: str
    result: str
    status: str
    attempts: int
    deliveries: int
    latency_seconds: float | None
    processing_seconds: float | None
    last_error: str | None
    resolved_by: str | None = None
    resolution_reason: str | None = None


@dataclass(frozen=True)
class LogPage:
    rows: list[DeliveryRow]
    total: int
    offset: int
    limit: int
    capped: bool = False  # more than COUNT_CAP rows match: `total` is the cap

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))

    @property
    def total_text(self) -> str:
        return f"{self.total:,}+" if self.capped else f"{self.total:,}"


@dataclass(frozen=True)
class EventDetail:
    row: DeliveryRow
    payload: dict[str, Any]
    resolved_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _conditions(flt: LogFilter) -> list[Any]:
    wanted = (flt.object_id or "").strip()
    return webhook_events.log_conditions(types=flt.types, object_id=wanted or None,
                                         statuses=[s for s in flt.statuses if s in STATUSES], source=flt.source)


def list_deliveries(uow: UnitOfWork, flt: LogFilter, *, settings: Settings) -> LogPage:
    """One page of the log, newest delivery first; the payload is not read here."""
    limit = max(1, min(flt.limit, MAX_PAGE_SIZE))
    offset = max(0, flt.offset)
    conditions = _conditions(flt)
    configured = webhook_secrets.fingerprints(settings.webhook_secret_values)
    with uow:
        total = webhook_events.count_capped(uow, conditions, cap=COUNT_CAP)
        rows = webhook_events.log_page(uow, conditions, limit=limit, offset=offset)
    return LogPage([_row(r, configured) for r in rows], min(total, COUNT_CAP), offset, limit,
                   capped=total > COUNT_CAP)


def _row(r: Any, configured: list[str]) -> DeliveryRow:
    latency = (r.received_at - r.created).total_seconds() if r.source == "webhook" else None
    processing = (r.processed_at - r.received_at).total_seconds() if r.processed_at else None
    return DeliveryRow(
        id=r.id, type=r.type, object_id=r.object_id, created=r.created, received_at=r.received_at,
        source=source_label(r.source), signature=signature_result(r.source, r.signed_with, configured),
        result=processing_result(r.status, r.last_error, r.resolved_by, r.resolution_reason),
        status=r.status, attempts=int(r.attempts), deliveries=1 + int(r.duplicate_deliveries or 0),
        latency_seconds=latency, processing_seconds=processing, last_error=r.last_error,
        resolved_by=r.resolved_by, resolution_reason=r.resolution_reason,
    )


def source_label(source: str) -> str:
    return "webhook" if source == "webhook" else f"backfill ({source})"


def signature_result(source: str, signed_with: str | None, configured: list[str]) -> str:
    """What the receiver's signature check said about the first delivery."""
    if source != "webhook":
        return "not signed: read from the Events API"
    if not signed_with:
        return "verified"  # stored before the receiver recorded which secret matched
    keys = [webhook_secrets.label(fp, configured) for fp in signed_with.split(",") if fp]
    return "verified with " + " and ".join(keys)


def processing_result(status: str, last_error: str | None, resolved_by: str | None,
                      resolution_reason: str | None) -> str:
    if status == "processed":
        return "processed"
    if status == "ignored":
        return f"ignored: {last_error}" if last_error else "ignored: type not in STRIPE_WEBHOOK_ALLOWED_EVENTS"
    if status == "resolved":
        return f"resolved by {resolved_by}: {resolution_reason}"
    if status == "failed":
        return f"failed: {last_error}" if last_error else "failed"
    return status  # pending | processing


def event_types(uow: UnitOfWork) -> list[str]:
    """The types present in the inbox, for the filter's choices."""
    with uow:
        return webhook_events.types_present(uow)


def event_detail(uow: UnitOfWork, event_id: str, *, settings: Settings) -> EventDetail | None:
    """One event with its payload redacted: secret-bearing fields (`client_secret`, `secret`),
    Stripe keys and `whsec_` values, URL passwords and every secret this console holds."""
    configured = webhook_secrets.fingerprints(settings.webhook_secret_values)
    with uow:
        found = webhook_events.log_row_with_payload(uow, event_id)
    if found is None:
        return None
    payload = redacted_payload(found.payload, settings)
    return EventDetail(_row(found, configured), payload, found.resolved_at)


def redacted_payload(payload: Any, settings: Settings) -> dict[str, Any]:
    redacted = scrub_value(redact_secret_fields(payload), secrets=tuple(settings.secret_values()))
    return redacted if isinstance(redacted, dict) else {"payload": redacted}


@privileged("webhooks.resolve")
def resolve_event(event_id: str, reason: str, *, actor: str, settings: Settings, uow: UnitOfWork,
                  now: datetime | None = None) -> DeliveryRow:
    """Close a poison event by hand: status `resolved` with who, when and why. The worker's
    claim only takes pending, failed and expired processing rows, so it is never retried
    (an explicit Replay still may run it again). One audit row whatever happens."""
    moment = now or utcnow()
    text = " ".join((reason or "").split())
    with uow:
        row = webhook_events.get(uow, event_id)
        problem = None
        if len(text) < REASON_MIN_CHARS:
            problem = f"Give a reason of at least {REASON_MIN_CHARS} characters (it is kept in the audit log)."
        elif len(text) > REASON_MAX_CHARS:
            problem = f"Keep the reason under {REASON_MAX_CHARS} characters."
        elif row is None:
            problem = f"No stored event {event_id}."
        elif row.status not in RESOLVABLE:
            problem = f"{event_id} is {row.status}; only failed, pending or stuck events can be marked resolved."
        elif row.status == "processing" and (row.next_attempt_at is None or row.next_attempt_at > moment):
            problem = f"{event_id} is being processed right now; try again when that attempt ends."
        if problem is not None:
            audit.record(uow, actor=actor, action="webhooks.resolve", result="refused", target=event_id,
                         error=problem, details={"reason": text[:REASON_MAX_CHARS]})
            uow.commit()
            raise WebhookLogError(problem)
        assert row is not None
        previous = {"status": row.status, "attempts": row.attempts, "last_error": row.last_error}
        # Conditional: a worker that claimed the row since it was read wins, and nothing changes.
        changed = webhook_events.mark_resolved(uow, event_id, status=row.status, attempts=row.attempts, at=moment,
                                               by=actor, reason=text)
        if not changed:
            audit.record(uow, actor=actor, action="webhooks.resolve", result="refused", target=event_id,
                         error="a worker took the event meanwhile", details={"reason": text})
            uow.commit()
            raise WebhookLogError(f"A worker started {event_id} meanwhile; look at its result and try again.")
        audit.record(uow, actor=actor, action="webhooks.resolve", result="ok", target=event_id,
                     idempotency_key=f"resolve:{event_id}", details={"reason": text, "previous": previous})
        uow.commit()
    detail = event_detail(uow, event_id, settings=settings)
    assert detail is not None
    return detail.row


def replay(event_id: str, *, actor: str, settings: Settings, uow: UnitOfWork, runtime: Runtime) -> bool:
    """Replay from the log (services/event_processing.py:replay_event, audited there); an event
    that fails again is refused in words, so the page shows it as it shows any refusal."""
    from services.event_processing import replay_event

    try:
        processed = replay_event(event_id, actor=actor, settings=settings, uow=uow, runtime=runtime)
    except (LookupError, ValueError) as refusal:  # no such event, or an ignored type: audited as refused
        raise WebhookLogError(str(refusal)) from None
    if not processed:
        raise WebhookLogError(f"{event_id} ran again and failed again; the error is in the log.")
    return True


# --- per-endpoint delivery success over time ----------------------------------------------------
REFUSED_SERIES = "refused (signature or mode; endpoint unknown)"


def endpoint_success_per_hour(uow: UnitOfWork, *, since: datetime, settings: Settings,
                              until: datetime | None = None) -> list[dict[str, Any]]:
    """Per hour of arrival and per endpoint (the signing secret that verified the delivery):
    deliveries accepted (every copy: first ones and redeliveries of stored events), how many of
    those events were then handled (processed or ignored), and the deliveries the receiver refused
    (which no endpoint can be credited with). `success` is accepted / (accepted + refused) of the
    hour, the share of signed requests answered 2xx."""
    configured = webhook_secrets.fingerprints(settings.webhook_secret_values)
    end = until or utcnow() + timedelta(seconds=1)
    with uow:
        rows = webhook_events.deliveries_per_hour_and_key(uow, since=since, until=end)
        refused_points = metric_rows.point_sums_per_hour(
            uow, [metric_points.WEBHOOK_INVALID_SIGNATURE, metric_points.WEBHOOK_LIVEMODE_MISMATCH],
            start=since, end=end, test=None)
    series: dict[tuple[str, str], dict[str, int]] = {}
    for hour, signed_with, events, deliveries, handled_count in rows:
        first = (signed_with or "").split(",")[0]
        endpoint = webhook_secrets.label(first, configured) if first else "unrecorded key (before the log)"
        entry = series.setdefault((hour_label(hour), endpoint), {"accepted": 0, "events": 0, "handled": 0})
        entry["accepted"] += deliveries
        entry["events"] += events
        entry["handled"] += handled_count
    refused: dict[str, int] = {}
    for (_name, hour), total in refused_points.items():
        refused[hour_label(hour)] = refused.get(hour_label(hour), 0) + total
    accepted_per_hour: dict[str, int] = {}
    for (bucket, _), entry in series.items():
        accepted_per_hour[bucket] = accepted_per_hour.get(bucket, 0) + entry["accepted"]
    out: list[dict[str, Any]] = []
    for (bucket, endpoint), entry in sorted(series.items()):
        total = accepted_per_hour[bucket] + refused.get(bucket, 0)
        out.append({"hour": bucket, "endpoint": endpoint, **entry, "refused": 0,
                    "success": accepted_per_hour[bucket] / total if total else 1.0})
    for bucket, count in sorted(refused.items()):
        if count:
            total = accepted_per_hour.get(bucket, 0) + count
            out.append({"hour": bucket, "endpoint": REFUSED_SERIES, "accepted": 0, "events": 0, "handled": 0,
                        "refused": count, "success": accepted_per_hour.get(bucket, 0) / total})
    return sorted(out, key=lambda r: (r["hour"], r["endpoint"]))


# --- Stripe's side: events not yet delivered to every endpoint -----------------------------------
UNDELIVERED_LIMIT = 100


@dataclass(frozen=True)
class Undelivered:
    events: list[dict[str, Any]]
    more: bool  # at least UNDELIVERED_LIMIT: there may be more
    missing_here: int  # of those, not stored in this console's inbox at all


def undelivered_at_stripe(runtime: Runtime, *, since: datetime) -> Undelivered:
    """Events since `since` that Stripe has not yet delivered to every endpoint: the Events API's
    `delivery_success=false` ("still pending or failed all delivery attempts to a webhook
    endpoint"; not per endpoint). One page of at most 100, then which of them this console never
    stored (those are the ones `billing-ops sync` would backfill)."""
    from itertools import islice

    listed = list(islice(runtime.gateway.list_events(delivery_success=False, created={"gte": int(since.timestamp())}),
                         UNDELIVERED_LIMIT))
    events = [{"id": e["id"], "type": e.get("type"), "created": e.get("created"),
               "pending_webhooks": e.get("pending_webhooks")} for e in listed]
    ids = [e["id"] for e in events]
    with runtime.uow() as uow:
        stored = webhook_events.stored_ids(uow, ids)
    for event in events:
        event["stored here"] = event["id"] in stored
    return Undelivered(events, len(events) >= UNDELIVERED_LIMIT, sum(1 for e in events if not e["stored here"]))
