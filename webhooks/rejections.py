"""Refused deliveries counted in memory and written in batches, off the receiver's event loop.
"""

from __future__ import annotations

import logging
import threading
import time

from db.models.base import utcnow
from services import metric_points
from services.runtime import Runtime

logger = logging.getLogger(__name__)

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


