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
from services.event_backfill import (
    FETCH_THREADS,
    BackfillProgress,
    EventBackfill,
    Window,
    clear_progress,
    load_progress,
    row_error,
    save_progress,
)
from services.event_processing import process_pending
from services.runtime import Runtime

# Stripe keeps events retrievable through the Events API for 30 days.
EVENTS_RETENTION_DAYS = 30
PROGRESS_EVERY = 500
DRAIN_BATCH = 500


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


_row_error = row_error


def new_state(since_ts: int, *, options: dict[str, Any], now: float) -> dict[str, Any]:
    """A fresh sync's progress: one window from `since_ts` with no upper bound (a test clock can
    stamp events ahead of the wall clock); the first page narrows and splits it."""
    return {"options": options, "since_ts": since_ts, "until_ts": int(now) + 1, "phase": "events",
            "windows": [Window(since_ts).to_json()], "fetched": 0, "stored": 0, "pages": 0,
            "started_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")}


def _event_summary(done: BackfillProgress) -> str:
    line = f"events: {done.fetched} read, {done.stored} new, {done.duplicate} already stored"
    return line + (f", {done.failed} not stored" if done.failed else "")


def sync_recent_events(
    runtime: Runtime, *, since_ts: int, progress: Callable[[str], None] = lambda _l: None,
    failures: list[dict[str, str]] | None = None, state: dict[str, Any] | None = None,
    on_page: Callable[[BackfillProgress], None] = lambda _p: None, threads: int = FETCH_THREADS,
) -> dict[str, int]:
    """Fetch and store the events created since `since_ts` (pipelined pages, services/event_backfill.py).
    An event that cannot be stored (or is from the other Stripe mode) is reported in `failures`,
    not fatal. Nothing is processed here: the stored rows are the worker's backlog."""
    run_state = state or new_state(since_ts, options={"since_ts": since_ts}, now=time.time())
    done = EventBackfill(runtime, run_state, threads=threads, on_page=on_page).run()
    if state is None:  # no caller to resume it: leave no progress behind
        clear_progress(runtime)
    if failures is not None:
        failures.extend(done.failures)
    progress(_event_summary(done))
    return done.outcomes()


def drain_backlog(runtime: Runtime, *, progress: Callable[[str], None] = lambda _l: None) -> int:
    """Process what is due now (the backfilled events among it) in the worker's batches, oldest first."""
    total = 0
    while processed := process_pending(runtime, limit=DRAIN_BATCH):
        total += processed
        if total % PROGRESS_EVERY < processed:
            progress(f"processed: {total}")
    return total


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
             progress: Callable[[str], None] = lambda _l: None,
             on_page: Callable[[BackfillProgress], None] = lambda _p: None, fresh: bool = False) -> dict[str, Any]:
    """Events (resumable, see services/event_backfill.py), their processing, then the list
    endpoints. A sync stopped part-way continues where it stopped when run again with the same
    options (`fresh` starts over); a finished one leaves nothing behind, so the next starts fresh."""
    started = time.time()
    options = {"since": since, "days": days}
    since_ts = _since_ts(since, days, started)
    saved = load_progress(runtime)
    if saved is not None and not fresh and saved.get("options") == options:
        state = saved
        since_ts = int(state["since_ts"])
        progress(f"Resuming the sync started {state.get('started_at')}: {state.get('fetched', 0)} events "
                 f"fetched so far, {len(state.get('windows') or [])} window(s) left")
    else:
        state = new_state(since_ts, options=options, now=started)
    progress(f"Backfilling events since {datetime.fromtimestamp(since_ts, UTC).isoformat(timespec='seconds')}")
    failures: list[dict[str, str]] = []
    if state["phase"] == "events":
        try:
            events = sync_recent_events(runtime, since_ts=since_ts, progress=progress, failures=failures,
                                        state=state, on_page=on_page)
        except BaseException:  # Ctrl-C included: what is stored stays stored, the rest is resumable
            progress(f"Stopped after {state.get('fetched', 0)} events; run the same sync again to continue "
                     "where it stopped.")
            raise
        state.update(phase="objects", events=events)
        with runtime.uow() as uow:
            save_progress(uow, state)
            uow.commit()
    else:
        events = dict(state.get("events") or {})
    fetched_in = round(time.time() - started, 1)
    processed = drain_backlog(runtime, progress=progress)
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
    clear_progress(runtime)
    return {"events": events, "objects": counts, "seconds": round(time.time() - started, 1),
            "events_seconds": fetched_in, "processed": processed,
            "since": datetime.fromtimestamp(since_ts, UTC).isoformat(timespec="seconds"),
            "not_stored": {"count": len(failures), "rows": failures}}
