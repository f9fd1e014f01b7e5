"""Prometheus counters for the webhook receiver and event processing (GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

# The definitions are in services/webhook_counts.py; the console's figures use the same ones.
WEBHOOK_RECEIVED = Counter(
    "stripe_webhook_received", "Verified webhook deliveries (first copies and duplicates)", registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "stripe_webhook_deliveries", "Webhook requests by outcome (new, duplicate, ignored: verified deliveries; "
    "invalid_signature, livemode_mismatch, rejected: refused)", ["outcome"], registry=REGISTRY,
)
EVENTS_BACKFILLED = Counter(
    "stripe_events_backfilled", "Events first stored by a backfill (Events API), never counted as received",
    ["source"], registry=REGISTRY,
)
EVENTS_PROCESSED = Counter(
    "stripe_events_processed", "Stored events processed, by result (processed, failed, ignored)", ["result"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    "stripe_webhook_ack_seconds", "Time from request to acknowledgement",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=REGISTRY,
)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
