"""Processing stored events: claim a row with a conditional UPDATE, run its idempotent handlers,
record the outcome; failures back off and stay retryable; a replay goes through the same path.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from db.models import StripeEvent
from db.models.base import utcnow
from db.session import UnitOfWork
from services import audit, prometheus
from services.audit import privileged
from services.config import Settings
from services.observability import scrub_text_and_emails
from services.runtime import Runtime
from services.webhook_signature import LIVEMODE_MISMATCH

logger = logging.getLogger(__name__)

# A claimed event whose worker died is retried once this lease runs out.
PROCESSING_LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
ERROR_TEXT_LIMIT = 500


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


