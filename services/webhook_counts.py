"""What the console counts about webhooks, defined once.

Every figure a person reads about deliveries (the Webhooks page, the First-24h board,
the DB aggregates behind them and the receiver's GET /metrics) comes from here:

- **received**: webhook deliveries that passed signature verification, every copy:
  the first copy of an event and each redelivery are both deliveries.
- **received (unique)**: the distinct events those deliveries carried (received - duplicates).
- **duplicate**: a verified delivery of an event id that was already stored.
- **ignored**: the first verified delivery of an event whose type the console does not
  handle (not in STRIPE_WEBHOOK_ALLOWED_EVENTS); stored, never processed.
- **backfilled**: events first stored by `billing-ops sync` (the Events API) or another
  non-webhook source. Counted and labelled on their own and never as received deliveries;
  an event sync finds already stored is not counted at all.
- **invalid signature**: a request whose Stripe-Signature did not verify (not a delivery).

So received = handled + ignored + duplicates, and unique = handled + ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from db.models.base import utcnow
from db.repositories import metrics as metric_rows
from db.repositories import webhook_events
from db.repositories.hours import hour_label
from db.session import UnitOfWork
from services import metric_points as m
from services import prometheus

WEBHOOK_SOURCE = webhook_events.WEBHOOK_SOURCE

# The store outcome (services/webhooks.store_events) -> the /metrics `outcome` label.
OUTCOME_LABELS = {"stored": "new", "duplicate": "duplicate", "ignored": "ignored"}


@dataclass(frozen=True)
class DeliveryCounts:
    received: int
    duplicates: int
    ignored: int
    backfilled: int
    invalid_signatures: int

    @property
    def unique(self) -> int:
        return self.received - self.duplicates

    @property
    def handled(self) -> int:
        return self.unique - self.ignored


def delivery_metric_rows(event: dict[str, Any], outcome: str, *, source: str, at: datetime) -> list[dict[str, Any]]:
    """The metric_points rows for one stored-or-duplicate event (inside the storing transaction)."""
    event_id, event_type = event["id"], event["type"]
    test = is_test_event(event)
    extra: dict[str, Any] = {m.TEST_TAG: True} if test else {}
    if source != WEBHOOK_SOURCE:
        if outcome == "duplicate":
            return []  # already stored: sync found nothing new
        return [m.metric_row(m.EVENTS_BACKFILLED, at=at, tags={"type": event_type, "source": source, **extra},
                             dedupe_key=f"{event_id}:backfilled")]
    if outcome == "duplicate":
        return [
            m.metric_row(m.WEBHOOK_RECEIVED, at=at, tags={"type": event_type, "outcome": "duplicate", **extra}),
            m.metric_row(m.WEBHOOK_DUPLICATE, at=at, tags={"event": event_id, **extra}),
        ]
    rows = [m.metric_row(m.WEBHOOK_RECEIVED, at=at,
                         tags={"type": event_type, "outcome": OUTCOME_LABELS[outcome], **extra},
                         dedupe_key=f"{event_id}:received")]
    if outcome == "ignored":
        rows.append(m.metric_row(m.WEBHOOK_IGNORED, at=at, tags={"type": event_type, **extra},
                                 dedupe_key=f"{event_id}:ignored"))
    return rows


def count_in_process(outcomes: Sequence[str], *, source: str) -> None:
    """The Prometheus side of the same definitions (after the commit)."""
    for outcome in outcomes:
        if source == WEBHOOK_SOURCE:
            prometheus.WEBHOOK_RECEIVED.inc()
            prometheus.WEBHOOK_DELIVERIES.labels(OUTCOME_LABELS[outcome]).inc()
        elif outcome != "duplicate":
            prometheus.EVENTS_BACKFILLED.labels(source).inc()


# The guided smoke test's Checkout Session and subscription carry metadata.smoke_test=<run id>.
SMOKE_TEST_METADATA = "smoke_test"


def is_test_event(event: dict[str, Any]) -> bool:
    """Activity of a Stripe test clock, the QA matrix or the guided smoke test: kept out of
    production figures."""
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        return False
    if obj.get("test_clock"):
        return True
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and bool(metadata.get("qa_case") or metadata.get("qa_run")
                                           or metadata.get(SMOKE_TEST_METADATA)):
        return True
    # An invoice carries its subscription's metadata under parent.subscription_details (basil).
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    inherited = details.get("metadata") if isinstance(details, dict) else None
    return isinstance(inherited, dict) and bool(inherited.get(SMOKE_TEST_METADATA))


# The reconciliation trigger of a QA-matrix run: its runs and metrics are test activity.
QA_TRIGGER = "qa"


def test_tags(event: dict[str, Any]) -> dict[str, Any]:
    """Extra metric tags for an event's effects: {"test": True} for test-clock / QA activity."""
    return {m.TEST_TAG: True} if is_test_event(event) else {}


def delivery_counts(uow: UnitOfWork, *, since: datetime, until: datetime | None = None,
                    include_test: bool = False) -> DeliveryCounts:
    """The DB aggregate of the definitions above over [since, until)."""
    names = [m.WEBHOOK_RECEIVED, m.WEBHOOK_DUPLICATE, m.WEBHOOK_IGNORED, m.EVENTS_BACKFILLED,
             m.WEBHOOK_INVALID_SIGNATURE]
    with uow:
        totals = metric_rows.point_totals(uow, names, since=since, until=until, test=None if include_test else False)
    return DeliveryCounts(received=totals[m.WEBHOOK_RECEIVED], duplicates=totals[m.WEBHOOK_DUPLICATE],
                          ignored=totals[m.WEBHOOK_IGNORED], backfilled=totals[m.EVENTS_BACKFILLED],
                          invalid_signatures=totals[m.WEBHOOK_INVALID_SIGNATURE])


def prometheus_counts(exposition: str) -> DeliveryCounts:
    """The same figures read back from a /metrics exposition (process lifetime)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            label = sample.labels.get("outcome") or sample.labels.get("source") or ""
            key = f"{sample.name}:{label}"
            values[key] = values.get(key, 0) + sample.value
    backfilled = sum(v for k, v in values.items() if k.startswith("stripe_events_backfilled_total:"))
    return DeliveryCounts(
        received=int(values.get("stripe_webhook_received_total:", 0)),
        duplicates=int(values.get("stripe_webhook_deliveries_total:duplicate", 0)),
        ignored=int(values.get("stripe_webhook_deliveries_total:ignored", 0)),
        backfilled=int(backfilled),
        invalid_signatures=int(values.get("stripe_webhook_deliveries_total:invalid_signature", 0)),
    )


CLOCK_SKEW = timedelta(minutes=1)  # an event Stripe stamped a moment before our clock reads it


def events_per_hour(uow: UnitOfWork, *, since: datetime, until: datetime | None = None,
                    include_test: bool = False) -> list[dict[str, Any]]:
    """Stored events per hour of the event's own `created` time, split into webhook
    deliveries and backfill, so a month of backfill lands in its own hours and series."""
    # A window ends now: an event stamped later can only be a test clock's (Stripe dates its
    # events at the clock's frozen time), which a "last 24 h" chart must not stretch to.
    end = until if until is not None else utcnow() + CLOCK_SKEW
    with uow:
        rows = webhook_events.created_between(uow, since=since, until=end)
    counts: dict[tuple[str, str], int] = {}
    for hour, source, payload in rows:
        if not include_test and isinstance(payload, dict) and is_test_event(payload):
            continue
        key = (hour_label(hour), source_label(source))
        counts[key] = counts.get(key, 0) + 1
    return [{"hour": h, "source": s, "events": n} for (h, s), n in sorted(counts.items())]


def source_label(source: str) -> str:
    return "webhook delivery" if source == WEBHOOK_SOURCE else f"backfill ({source})"
