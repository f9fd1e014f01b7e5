"""Webhook deliveries: signed like Stripe (`Stripe-Signature`, one v1 per active secret while a rolled
secret overlaps), from one thread, retried with backoff, with the faults `/_emulator/faults` sets."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.request
from typing import TYPE_CHECKING

from emulator.objects import catalogue
from emulator.state import Json, new_id
from emulator.wire.routes import public

if TYPE_CHECKING:
    from emulator.server import EmulatorServer

DEFAULT_RETRY_DELAYS_S = (5.0, 30.0, 120.0, 600.0)


def signature_header(payload: bytes, secret: str | list[str], timestamp: int) -> str:
    """Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>">, one v1 per active secret
    (while a rolled secret's overlap lasts Stripe signs with the old and the new one)."""
    secrets = [secret] if isinstance(secret, str) else secret
    digests = [hmac.new(s.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest() for s in secrets]
    return f"t={timestamp}," + ",".join(f"v1={d}" for d in digests)


def active_secrets(endpoint: Json, now: float) -> list[str]:
    """The endpoint's secret, then any rolled-away secret whose overlap has not ended."""
    previous = [p["secret"] for p in endpoint.get("_previous_secrets", []) if p["expires_at"] > now]
    return [endpoint["secret"], *previous]


def roll_endpoint_secret(endpoint: Json, expires_in_s: float, now: float) -> Json:
    """The Dashboard's "Roll secret" (Stripe has no API for it): a new secret signs from now on and
    the old one keeps signing beside it for `expires_in_s` (0 = retire it at once). Rolling again
    ends any earlier overlap, so at most two secrets sign at a time."""
    old = endpoint["secret"]
    endpoint["secret"] = "whsec_" + new_id("x")[2:] + new_id("x")[2:10]
    endpoint["_previous_secrets"] = [{"secret": old, "expires_at": now + expires_in_s}] if expires_in_s > 0 else []
    return {"id": endpoint["id"], "secret": endpoint["secret"],
            "previous_secret_expires_at": int(now + expires_in_s) if expires_in_s > 0 else None}


class WebhookDelivery:
    """Delivers events to registered endpoints from one thread, with retries and faults."""

    def __init__(self, emulator: EmulatorServer) -> None:
        self.emulator = emulator
        self.queue: list[tuple[float, int, str, str, int]] = []  # (due, seq, endpoint, event, attempt)
        self.seq = 0
        self.cond = threading.Condition()
        self.in_flight = 0
        self.retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S
        self.max_attempts = len(DEFAULT_RETRY_DELAYS_S) + 1
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
        self.thread.start()

    def enqueue(self, event: Json) -> None:
        engine = self.emulator.engine
        endpoints = [e for e in engine.all("webhook_endpoint") if e["status"] == "enabled"
                     and ("*" in e["enabled_events"] or event["type"] in e["enabled_events"])]
        if not endpoints:
            return
        event["pending_webhooks"] = len(endpoints)
        faults = self.emulator.faults
        with self.cond:
            for endpoint in endpoints:
                if faults.drop_webhooks and faults.random.random() < faults.drop_webhooks:
                    event["pending_webhooks"] -= 1
                    continue
                copies = 2 if faults.duplicate_webhooks and faults.random.random() < faults.duplicate_webhooks else 1
                for _ in range(copies):
                    delay = faults.random.uniform(0, 0.2) if faults.reorder_webhooks else 0.0
                    self._push(time.monotonic() + delay, endpoint["id"], event["id"], 1)
            self.cond.notify_all()

    def _push(self, due: float, endpoint_id: str, event_id: str, attempt: int) -> None:
        self.seq += 1
        self.queue.append((due, self.seq, endpoint_id, event_id, attempt))

    def _take_due(self, now: float) -> list[tuple[float, int, str, str, int]]:
        due = sorted(item for item in self.queue if item[0] <= now)
        self.queue = [item for item in self.queue if item[0] > now]
        if self.emulator.faults.reorder_webhooks:
            self.emulator.faults.random.shuffle(due)
        return due

    def _run(self) -> None:
        while not self.stopped:
            with self.cond:
                batch = self._take_due(time.monotonic())
                if not batch:
                    next_due = min((item[0] for item in self.queue), default=None)
                    timeout = 0.5 if next_due is None else max(0.0, min(0.5, next_due - time.monotonic()))
                    self.cond.wait(timeout)
                    continue
                self.in_flight += len(batch)
            for _due, _seq, endpoint_id, event_id, attempt in batch:
                try:
                    self._deliver(endpoint_id, event_id, attempt)
                finally:
                    with self.cond:
                        self.in_flight -= 1
                        self.cond.notify_all()

    def _deliver(self, endpoint_id: str, event_id: str, attempt: int) -> None:
        engine = self.emulator.engine
        with engine.lock:
            endpoint = engine.objects.get("webhook_endpoint", {}).get(endpoint_id)
            event = engine.objects.get("event", {}).get(event_id)
            if endpoint is None or event is None or endpoint.get("deleted"):
                return
            body = json.dumps(catalogue.conform(public(event))).encode()
            secrets = active_secrets(endpoint, time.time())
            url = endpoint["url"]
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(body, secrets, int(time.time())),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        })
        ok = False
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (test endpoints)
                ok = 200 <= response.status < 300
        except Exception:  # noqa: BLE001 (any failure is a failed delivery, retried)
            ok = False
        with engine.lock:
            self.emulator.delivery_log.append({"endpoint": endpoint_id, "event": event_id, "type": event["type"],
                                               "attempt": attempt, "ok": ok, "ts": time.time()})
            if ok:
                event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
                if event.get("_delivery_success") is not False:
                    event["_delivery_success"] = True
                return
            event["_delivery_success"] = False
        if attempt < self.max_attempts:
            delay = self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)]
            with self.cond:
                self._push(time.monotonic() + delay, endpoint_id, event_id, attempt + 1)
                self.cond.notify_all()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until nothing is due now or in flight (later retries stay queued)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while time.monotonic() < deadline:
                due_now = any(item[0] <= time.monotonic() for item in self.queue)
                if not due_now and self.in_flight == 0:
                    return
                self.cond.notify_all()
                self.cond.wait(0.05)

    def stop(self) -> None:
        self.stopped = True
        with self.cond:
            self.cond.notify_all()
