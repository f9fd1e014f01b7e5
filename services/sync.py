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
from services.webhooks import ingest_event

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


def sync_recent_events(
    runtime: Any, *, since_ts: int, progress: Callable[[str], None] = lambda _l: None
) -> dict[str, int]:
    """Pull events created since `since_ts` (oldest first) and ingest each once."""
    events = list(runtime.gateway.list_events(created={"gte": since_ts}))
    events.sort(key=lambda e: (e["created"], e["id"]))
    outcomes = {"stored": 0, "duplicate": 0, "ignored": 0}
    for index, event in enumerate(events, start=1):
        outcomes[ingest_event(runtime, event, source="sync")] += 1
        if index % PROGRESS_EVERY == 0:
            progress(f"events: {index}/{len(events)}")
    progress(f"events: {len(events)} read, {outcomes['stored']} new, {outcomes['duplicate']} already stored")
    return outcomes


def _upsert_all(runtime: Any, label: str, objects: Any, upsert: Callable[[Any, dict[str, Any], int], None],
                progress: Callable[[str], None]) -> int:
    count = 0
    observed_at = int(time.time())
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        with runtime.uow() as uow:
            for obj in batch:
                upsert(uow, obj, observed_at)
            uow.commit()
        batch.clear()

    for obj in objects:
        batch.append(obj)
        count += 1
        if len(batch) >= 200:
            flush()
    if batch:
        flush()
    progress(f"{label}: {count}")
    return count


def _upsert_subscription(runtime: Any) -> Callable[[Any, dict[str, Any], int], None]:
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


def run_sync(runtime: Any, *, since: str | None, days: int | None,
             progress: Callable[[str], None] = lambda _l: None) -> dict[str, Any]:
    started = time.time()
    since_ts = _since_ts(since, days, started)
    progress(f"Backfilling events since {datetime.fromtimestamp(since_ts, UTC).isoformat(timespec='seconds')}")
    events = sync_recent_events(runtime, since_ts=since_ts, progress=progress)
    gateway = runtime.gateway
    settings = runtime.settings
    counts = {
        "customers": _upsert_all(runtime, "customers", gateway.list_customers(),
                                 _fresh(Customer, stripe_mapping.upsert_customer), progress),
        "subscriptions": _upsert_all(runtime, "subscriptions", gateway.list_subscriptions(),
                                     _upsert_subscription(runtime), progress),
        "invoices": _upsert_all(
            runtime, "invoices", gateway.list_invoices(),
            _fresh(Invoice, lambda uow, obj, observed_at: stripe_mapping.upsert_invoice(
                uow, obj, observed_at=observed_at, settings=settings)), progress),
        "charges": _upsert_all(runtime, "charges", gateway.list_charges(),
                               _fresh(Charge, stripe_mapping.upsert_charge), progress),
        "disputes": _upsert_all(runtime, "disputes", gateway.list_disputes(),
                                _fresh(Dispute, stripe_mapping.upsert_dispute), progress),
        "early_fraud_warnings": _upsert_all(runtime, "early fraud warnings", gateway.list_early_fraud_warnings(),
                                            _fresh(FraudWarning, stripe_mapping.upsert_fraud_warning), progress),
    }
    return {"events": events, "objects": counts, "seconds": round(time.time() - started, 1),
            "since": datetime.fromtimestamp(since_ts, UTC).isoformat(timespec="seconds")}


