"""Backfill: missed events from the Events API, then the list endpoints, to build or
repair the billing DB (first install, an outage, a fresh environment)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from db.models import Charge, Customer, Dispute, FraudWarning, Invoice, UserSubscription
from services import stripe_mapping
from services.observability import scrub_text_and_emails
from services.runtime import Runtime
from services.webhooks import LIVEMODE_MISMATCH, SignatureError, check_event, ingest_event, livemode_matches

# Stripe keeps events retrievable through the Events API for 30 days.
EVENTS_RETENTION_DAYS = 30
PROGRESS_EVERY = 500


def _since_ts(since: str | None, days: int | None, now: float) -> int:
    oldest = int(now - EVENTS_RETENTION_DAYS * 86400)
    if since:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            raise ValueError("--since must be an ISO date or date-time, e.g. 2026-11-01 or 2026-11-01T12:00") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(oldest, int(moment.timestamp()))
    if days is not None:
        if days < 1:
            raise ValueError("--days must be at least 1")
        return max(oldest, int(now - min(days, EVENTS_RETENTION_DAYS) * 86400))
    return oldest


def _row_error(error: Exception) -> str:
    """A short, safe reason for a row that could not be stored: the driver's first line (a
    PostgreSQL DETAIL line can quote the value, so it is left out), secrets and emails scrubbed."""
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).strip().splitlines() or [""])[0]
    reason = getattr(error, "reason", None) or first_line
    return scrub_text_and_emails(f"{cause.__class__.__name__}: {reason}")[:200]


def sync_recent_events(
    runtime: Runtime, *, since_ts: int, progress: Callable[[str], None] = lambda _l: None,
    failures: list[dict[str, str]] | None = None,
) -> dict[str, int]:
    """Pull events created since `since_ts` (oldest first) and ingest each once. An event that
    cannot be stored (or is from the other Stripe mode) is reported in `failures`, not fatal."""
    events = list(runtime.gateway.list_events(created={"gte": since_ts}))
    events.sort(key=lambda e: (e["created"], e["id"]))
    outcomes = {"stored": 0, "duplicate": 0, "ignored": 0, "failed": 0}
    for index, event in enumerate(events, start=1):
        try:
            check_event(event)
            if not livemode_matches(event, runtime.settings):
                raise SignatureError(LIVEMODE_MISMATCH)
            outcomes[ingest_event(runtime, event, source="sync")] += 1
        except Exception as error:  # one bad event must not stop the backfill
            outcomes["failed"] += 1
            if failures is not None:
                failures.append({"kind": "events", "id": str(event.get("id"))[:255], "error": _row_error(error)})
        if index % PROGRESS_EVERY == 0:
            progress(f"events: {index}/{len(events)}")
    line = f"events: {len(events)} read, {outcomes['stored']} new, {outcomes['duplicate']} already stored"
    progress(line + (f", {outcomes['failed']} not stored" if outcomes["failed"] else ""))
    return outcomes


def _upsert_all(runtime: Runtime, label: str, objects: Any, upsert: Callable[[Any, dict[str, Any], int], None],
                progress: Callable[[str], None], failures: list[dict[str, str]]) -> int:
    """Upsert in batches of 200, each row in its own savepoint: a row the database refuses is
    rolled back alone and reported in `failures`; the rest of its batch is stored."""
    count = 0
    failed = 0
    observed_at = int(time.time())
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal failed
        with runtime.uow() as uow:
            for obj in batch:
                try:
                    with uow.session.begin_nested():
                        upsert(uow, obj, observed_at)
                except Exception as error:  # reported below; the savepoint rolled this row back
                    failed += 1
                    failures.append({"kind": label, "id": str(obj.get("id"))[:255], "error": _row_error(error)})
            uow.commit()
        batch.clear()

    for obj in objects:
        batch.append(obj)
        count += 1
        if len(batch) >= 200:
            flush()
    if batch:
        flush()
    progress(f"{label}: {count}" + (f" ({failed} not stored)" if failed else ""))
    return count - failed


def _upsert_subscription(runtime: Runtime) -> Callable[[Any, dict[str, Any], int], None]:
    def upsert(uow: Any, obj: dict[str, Any], observed_at: int) -> None:
        stored = uow.session.execute(
            select(UserSubscription.stripe_updated).where(UserSubscription.stripe_subscription_id == obj["id"])
        ).scalar()
        stripe_mapping.upsert_subscription(uow, obj, observed_at=max(observed_at, int(stored or 0) + 1),
                                           settings=runtime.settings)
    return upsert


def _fresh(model: Any, upsert: Callable[..., Any]) -> Callable[[Any, dict[str, Any], int], None]:
    def apply(uow: Any, obj: dict[str, Any], observed_at: int) -> None:
        stored = uow.session.get(model, obj["id"])
        upsert(uow, obj, observed_at=max(observed_at, int(getattr(stored, "stripe_updated", 0) or 0) + 1))
    return apply


def run_sync(runtime: Runtime, *, since: str | None, days: int | None,
             progress: Callable[[str], None] = lambda _l: None) -> dict[str, Any]:
    started = time.time()
    since_ts = _since_ts(since, days, started)
    progress(f"Backfilling events since {datetime.fromtimestamp(since_ts, UTC).isoformat(timespec='seconds')}")
    failures: list[dict[str, str]] = []
    events = sync_recent_events(runtime, since_ts=since_ts, progress=progress, failures=failures)
    gateway = runtime.gateway
    settings = runtime.settings
    counts = {
        "customers": _upsert_all(runtime, "customers", gateway.list_customers(),
                                 _fresh(Customer, stripe_mapping.upsert_customer), progress, failures),
        "subscriptions": _upsert_all(runtime, "subscriptions", gateway.list_subscriptions(),
                                     _upsert_subscription(runtime), progress, failures),
        "invoices": _upsert_all(
            runtime, "invoices", gateway.list_invoices(),
            _fresh(Invoice, lambda uow, obj, observed_at: stripe_mapping.upsert_invoice(
                uow, obj, observed_at=observed_at, settings=settings)), progress, failures),
        "charges": _upsert_all(runtime, "charges", gateway.list_charges(),
                               _fresh(Charge, stripe_mapping.upsert_charge), progress, failures),
        "disputes": _upsert_all(runtime, "disputes", gateway.list_disputes(),
                                _fresh(Dispute, stripe_mapping.upsert_dispute), progress, failures),
        "early_fraud_warnings": _upsert_all(runtime, "early fraud warnings", gateway.list_early_fraud_warnings(),
                                            _fresh(FraudWarning, stripe_mapping.upsert_fraud_warning), progress,
                                            failures),
    }
    if failures:
        progress(f"{len(failures)} rows not stored: " + ", ".join(f"{f['kind']} {f['id']}" for f in failures[:20])
                 + (" ..." if len(failures) > 20 else ""))
    return {"events": events, "objects": counts, "seconds": round(time.time() - started, 1),
            "since": datetime.fromtimestamp(since_ts, UTC).isoformat(timespec="seconds"),
            "not_stored": {"count": len(failures), "rows": failures}}
