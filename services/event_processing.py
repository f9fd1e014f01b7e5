"""Processing stored events: claim a batch with one UPDATE ... RETURNING (a single row with a
conditional UPDATE), apply their idempotent handlers in one transaction (a failing one alone),
re-reading from Stripe only what can be stale (services/event_rereads.py), record the outcomes;
failures back off and stay retryable; a replay goes through the same path.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, cast, or_, select, update

from db.models import StripeEvent
from db.models.base import utcnow
from db.session import UnitOfWork
from services import audit, metric_points, prometheus
from services import event_batch_rows as batch_rows
from services import event_rereads as rereads
from services.audit import privileged
from services.config import Settings
from services.fast_json import loads_text
from services.observability import scrub_text_and_emails
from services.runtime import Runtime
from services.webhook_signature import LIVEMODE_MISMATCH

if TYPE_CHECKING:  # services.switches imports this module's neighbours at import time
    from services.switches import SwitchState

logger = logging.getLogger(__name__)

# A claimed event whose worker died is retried once this lease runs out.
PROCESSING_LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
ERROR_TEXT_LIMIT = 500
# Events per claim and per transaction: enough to spread a transaction's cost thin, few enough
# that a batch's Stripe re-reads finish well inside the lease.
CLAIM_BATCH = 200


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


@dataclass(frozen=True)
class Claimed:
    """A stored event this worker holds (status `processing`, under the lease)."""

    id: str
    payload: dict[str, Any]
    source: str
    livemode: bool
    attempts: int
    created: datetime


# The payload comes back as its JSON text, decoded by orjson (a few times faster than the JSON
# type's json.loads, and the claim decodes every event of the backlog).
_CLAIMED_COLUMNS = (StripeEvent.id, cast(StripeEvent.payload, Text), StripeEvent.source, StripeEvent.livemode,
                    StripeEvent.attempts, StripeEvent.created)


def _claimed(row: Any) -> Claimed:
    event_id, payload, source, livemode, attempts, created = row
    return Claimed(event_id, loads_text(payload) if isinstance(payload, str | bytes) else payload, source,
                   livemode, attempts, created)


def _due(now: datetime) -> Any:
    return or_(StripeEvent.status == "pending",
               StripeEvent.status.in_(("failed", "processing")) & (StripeEvent.next_attempt_at <= now))


def _claim_batch(runtime: Runtime, now: datetime, limit: int) -> list[Claimed]:
    """Take up to `limit` due events, oldest first, in one UPDATE ... RETURNING. PostgreSQL skips
    rows another worker's claim has locked (FOR UPDATE SKIP LOCKED); SQLite's writers are serial
    (BEGIN IMMEDIATE). The outer WHERE repeats the due test, so a row is claimed by one worker."""
    due_ids = select(StripeEvent.id).where(_due(now)).order_by(StripeEvent.created, StripeEvent.id).limit(limit)
    if runtime.engine.dialect.name == "postgresql":
        due_ids = due_ids.with_for_update(skip_locked=True)
    claim = (update(StripeEvent).where(StripeEvent.id.in_(due_ids.scalar_subquery()), _due(now))
             .values(status="processing", attempts=StripeEvent.attempts + 1, next_attempt_at=now + PROCESSING_LEASE)
             .returning(*_CLAIMED_COLUMNS))
    with runtime.uow() as uow:
        rows = [_claimed(row) for row in uow.session.execute(claim, execution_options={"synchronize_session": False})]
        uow.commit()
    return sorted(rows, key=lambda r: (r.created, r.id))


def _error_text(error: Exception) -> str:
    return scrub_text_and_emails(f"{error.__class__.__name__}: {getattr(error, 'message', None) or error}")


def _mark_failed(session: Any, row: Claimed, message: str) -> None:
    session.execute(update(StripeEvent).where(StripeEvent.id == row.id).values(
        status="failed", last_error=message[:ERROR_TEXT_LIMIT], next_attempt_at=utcnow() + _backoff(row.attempts)))


class _HandlerFailed(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


@dataclass
class _Prepared:
    """A batch's read plan and, while its Stripe reads are still out, their future."""

    plan: rereads.ReadPlan
    reading: Future[None] | None = None


def _prepare(runtime: Runtime, rows: list[Claimed], *, pool: ThreadPoolExecutor | None = None) -> _Prepared:
    """Decide what the batch must read from Stripe and start reading it (on `pool`, so the reads
    of the next batch overlap the applying of this one; at once without a pool)."""
    live = runtime.settings.stripe_mode == "live"
    applicable = [row for row in rows if row.livemode == live]
    # Backfilled events are followed by a full list pass, so they skip the re-reads.
    synced = {row.id for row in applicable if row.source == "sync"}
    plan = rereads.ReadPlan()
    with runtime.uow() as uow:
        rereads.stale_objects(uow.session, [row.payload for row in applicable if row.id not in synced], plan)
        wanted = rereads.planned_reads(uow.session, [row.payload for row in applicable], plan.stale,
                                       lambda event: event["id"] not in synced)
    if not wanted:  # a console without a key (or nothing to read) never touches the gateway
        return _Prepared(plan)
    if pool is None:
        rereads.read_ahead(runtime.gateway, wanted, plan)
        return _Prepared(plan)
    return _Prepared(plan, pool.submit(rereads.read_ahead, runtime.gateway, wanted, plan))


def _apply(runtime: Runtime, rows: list[Claimed], prepared: _Prepared | None = None) -> int:
    """Apply claimed events in one transaction (no savepoint per event: they cost a third of the
    time). If a handler fails, the whole transaction rolls back and the batch is applied again as
    the events before it, the failing event alone (rolled back, marked failed, retried with
    backoff) and the events after it, with the same plan: what Stripe returned is not asked
    again. If the transaction itself fails, each event is applied again alone. Returns how many
    were processed."""
    from services.event_handlers import handle_event

    if not rows:
        return 0
    live = runtime.settings.stripe_mode == "live"
    done: dict[str, list[str]] = {"processed": [], "ignored": []}
    failed: dict[str, str] = {}
    try:
        prepared = prepared or _prepare(runtime, rows)
        if prepared.reading is not None:
            prepared.reading.result()
            prepared = _Prepared(prepared.plan)
        plan = prepared.plan
        with runtime.uow() as uow:
            # The batch's rows loaded in one query per table, its metric points written together.
            # Written once at the end (no autoflush: the lookups are served from the batch's rows).
            with (rereads.applying(plan),
                  batch_rows.loaded(uow.session, [row.payload for row in rows if row.livemode == live]) as loaded,
                  metric_points.batched(uow) as points, uow.session.no_autoflush):
                for index, row in enumerate(rows):
                    if row.livemode != live:
                        done["ignored"].append(row.id)
                        continue
                    try:
                        handle_event(uow, row.payload, runtime, refetch=row.source != "sync")
                        done["processed"].append(row.id)
                    except Exception as error:
                        if len(rows) > 1:
                            raise _HandlerFailed(index) from error
                        uow.session.rollback()  # the failed attempt changes nothing
                        loaded.forget()
                        points.clear()
                        done["processed"].clear()
                        failed[row.id] = _error_text(error)
                if len(rows) > 1:
                    loaded.check_unchanged()  # a concurrent change: applied again one at a time
            metric_points.record_metrics(uow, points)
            moment = utcnow()
            if done["processed"]:
                uow.session.execute(update(StripeEvent).where(StripeEvent.id.in_(done["processed"])).values(
                    status="processed", processed_at=moment, last_error=None, next_attempt_at=None))
            if done["ignored"]:
                # Stored before the receiver refused other-mode events, or by hand: never applied.
                uow.session.execute(update(StripeEvent).where(StripeEvent.id.in_(done["ignored"])).values(
                    status="ignored", next_attempt_at=None,
                    last_error=f"{LIVEMODE_MISMATCH}: the event is from the other Stripe mode"))
            for row in rows:
                if row.id in failed:
                    _mark_failed(uow.session, row, failed[row.id])
            uow.commit()
    except _HandlerFailed as failure:  # rolled back: around the bad event, then the bad event alone
        bad = failure.index
        return (_apply(runtime, rows[:bad], prepared) + _apply(runtime, [rows[bad]], prepared)
                + _apply(runtime, rows[bad + 1:], prepared))
    except Exception as error:  # the transaction, not one handler: retry each event alone
        if len(rows) > 1:
            return sum(_apply(runtime, [row], prepared) for row in rows)
        logger.warning("processing %s failed: %s", rows[0].id, _error_text(error))
        with runtime.uow() as uow:
            _mark_failed(uow.session, rows[0], _error_text(error))
            uow.commit()
        prometheus.EVENTS_PROCESSED.labels("failed").inc()
        return 0
    for event_id, message in failed.items():
        logger.warning("processing %s failed: %s", event_id, message)
    for outcome, count in (("processed", len(done["processed"])), ("ignored", len(done["ignored"])),
                           ("failed", len(failed))):
        if count:
            prometheus.EVENTS_PROCESSED.labels(outcome).inc(count)
    return len(done["processed"])


def process_event(runtime: Runtime, event_id: str, *, now: datetime | None = None, respect_switch: bool = True) -> bool:
    """Apply one stored event's effects; True when it is processed. While the `processing`
    kill switch is on the event stays stored, unclaimed, in the backlog."""
    from services.switches import switch_state

    moment = now or utcnow()
    if respect_switch and switch_state(runtime.uow(), "processing").paused:
        return False
    if not _claim(runtime, event_id, moment):
        return False
    with runtime.uow() as uow:
        row = uow.session.execute(select(*_CLAIMED_COLUMNS).where(StripeEvent.id == event_id)).one()
    return _apply(runtime, [_claimed(row)]) == 1


@dataclass(frozen=True)
class Poll:
    """One poll of the backlog: whether processing is paused, how many events it claimed (processed,
    failed or ignored alike) and how many it processed. A worker waits only when it claimed less
    than it asked for: failures and ignored types in a full poll still mean a backlog."""

    paused: SwitchState
    claimed: int
    processed: int


def poll_pending(runtime: Runtime, *, limit: int = 100, now: datetime | None = None) -> Poll:
    """Process due events oldest first (pending, failed past their backoff, expired claims), in
    claimed batches of up to CLAIM_BATCH; nothing while the `processing` kill switch is on
    (read once per poll)."""
    from services.switches import switch_state

    moment = now or utcnow()
    state = switch_state(runtime.uow(), "processing")
    if state.paused:
        return Poll(state, 0, 0)
    processed = 0
    claimed = _claim_batch(runtime, moment, min(CLAIM_BATCH, limit))
    total_claimed = len(claimed)
    left = limit - len(claimed)
    with ThreadPoolExecutor(1, thread_name_prefix="event-read-ahead") as pool:
        prepared: _Prepared | None = _prepare(runtime, claimed, pool=pool) if claimed else None
        while claimed:
            # The next batch is claimed and its Stripe reads started before this one is applied.
            following = _claim_batch(runtime, moment, min(CLAIM_BATCH, left)) if left > 0 else []
            left -= len(following)
            total_claimed += len(following)
            try:
                ahead = _prepare(runtime, following, pool=pool) if following else None
            except Exception:  # noqa: BLE001 (its _apply prepares it again, and handles what fails)
                ahead = None
            processed += _apply(runtime, claimed, prepared)
            claimed, prepared = following, ahead
    return Poll(state, total_claimed, processed)


def process_pending(runtime: Runtime, *, limit: int = 100, now: datetime | None = None) -> int:
    """`poll_pending`, returning how many events were processed."""
    return poll_pending(runtime, limit=limit, now=now).processed


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


