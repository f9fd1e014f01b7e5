"""`billing-ops worker`: processes stored events (with backoff) and runs reconciliation
on its cron when RECONCILE_CRON_ENABLED. Safe to run several: events are claimed in batches,
each row by one worker (services/event_processing.py), and reconciliation holds a DB lease."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from services.event_processing import poll_pending
from services.metrics import check_alerts
from services.runtime import Runtime

POLL_SECONDS = 1.0
ALERT_CHECK_SECONDS = 60.0  # alerts are evaluated at most this often; each is sent at most once per hour
# Events per poll; a full poll means a backlog, so the next one starts at once.
POLL_BATCH = 1000


def run_worker(runtime: Runtime, *, once: bool, echo: Callable[[str], None] = print,
               sleep: Callable[[float], None] = time.sleep) -> None:
    from services.reconciliation import ReconcileRefused, run_reconcile_cron

    settings = runtime.settings
    holder = f"{socket.gethostname()}:{os.getpid()}"
    next_reconcile = 0.0
    next_alerts = 0.0
    echo(f"worker {holder}: processing events"
         + (f"; reconciliation every {settings.reconcile_cron_interval_seconds} s"
            if settings.reconcile_cron_enabled else "; reconciliation cron disabled"))
    paused_seen = False
    while True:
        poll = poll_pending(runtime, limit=POLL_BATCH)  # reads the processing switch once
        paused = poll.paused
        if paused.paused != paused_seen:  # say so once per change, not every poll
            echo(f"processing paused by {paused.by}: {paused.reason}; events wait in the backlog"
                 if paused.paused else "processing resumed")
            paused_seen = paused.paused
        if poll.processed:
            echo(f"processed {poll.processed} event(s)")
        if settings.reconcile_cron_enabled and time.monotonic() >= next_reconcile:
            next_reconcile = time.monotonic() + settings.reconcile_cron_interval_seconds
            try:
                report = run_reconcile_cron(runtime, holder=holder)
            except ReconcileRefused as refused:  # audited; the next tick tries again
                echo(refused.message)
                report = None
            if report is not None:
                echo(f"reconcile run: examined {report.examined}, applied {report.applied}, drift {report.drift}")
        if time.monotonic() >= next_alerts:
            next_alerts = time.monotonic() + ALERT_CHECK_SECONDS
            sent = check_alerts(runtime)
            if sent:
                echo(f"sent {sent} alert(s) to Sentry")
        if once:
            return
        # Caught up, or paused: wait for new events. A full poll goes again at once, even when some
        # of its events failed or were of ignored types (they were claimed: the backlog is there).
        if poll.claimed < POLL_BATCH:
            sleep(POLL_SECONDS)
