"""The emulator's HTTP server: auth, idempotency, rate limit, faults, signed webhooks.

`EmulatorServer(port=0).start()` serves in a background thread (tests, demo);
`serve_forever()` is the `billing-ops emulator` command. /v1 speaks Stripe;
/_emulator/ is the test and benchmark control surface.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

# Importing a module registers its routes; the names used here are the ones bound.
from emulator import api as fb_api
from emulator import settings as account_settings  # tax settings, payment method domains
from emulator.billing import checkout as _checkout_routes  # noqa: F401 (Checkout Session expiry)
from emulator.billing import credit_notes as _credit_note_routes  # noqa: F401 (the /v1/credit_notes routes)
from emulator.billing import discounts as _discount_routes  # noqa: F401 (coupons, promotion codes, invoice discounts)
from emulator.billing import invoice_actions as _invoice_routes  # noqa: F401 (invoice update/delete/send/lines, ...)
from emulator.billing import portal as _portal_routes  # noqa: F401 (billing portal sessions)
from emulator.billing import retry_schedule
from emulator.billing import schedules as _schedule_routes  # noqa: F401 (the /v1/subscription_schedules routes)
from emulator.billing import subscription_items as _item_routes  # noqa: F401 (the /v1/subscription_items routes)
from emulator.disputes import radar as _radar_routes  # noqa: F401 (registers the /v1/radar/value_list* routes)
from emulator.engine import Engine
from emulator.objects import catalogue, validation
from emulator.payments import balance as _balance_routes  # noqa: F401 (/v1/balance_transactions, /v1/balance)
from emulator.payments import intent_actions as _payment_intent_routes  # noqa: F401 (capture, cancel, update)
from emulator.payments import setup_intents as setup_intent_routes  # /v1/setup_intents, customer payment methods
from emulator.state import Json, new_id
from emulator.wire import search as _search_routes  # noqa: F401 (the /v1/*/search routes, ahead of /{id})
from emulator.wire.protocol import StripeApiError, parse_form

DEFAULT_RETRY_DELAYS_S = (5.0, 30.0, 120.0, 600.0)
REALTIME_TICK_S = 5.0


class Faults:
    def __init__(self) -> None:
        self.latency_ms = 0.0
        self.rate_429 = 0.0
        self.rate_500 = 0.0
        self.drop_webhooks = 0.0
        self.duplicate_webhooks = 0.0
        self.reorder_webhooks = False
        self.random = random.Random(1)

    def as_dict(self) -> Json:
        return {"latency_ms": self.latency_ms, "rate_429": self.rate_429, "rate_500": self.rate_500,
                "drop_webhooks": self.drop_webhooks, "duplicate_webhooks": self.duplicate_webhooks,
                "reorder_webhooks": self.reorder_webhooks}

    def update(self, values: Json) -> None:
        for key in ("latency_ms", "rate_429", "rate_500", "drop_webhooks", "duplicate_webhooks"):
            if key in values:
                setattr(self, key, float(values[key]))
        if "reorder_webhooks" in values:
            self.reorder_webhooks = bool(values["reorder_webhooks"])
        if "seed" in values:
            self.random = random.Random(int(values["seed"]))


class TokenBucket:
    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.tokens = per_second
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.per_second, self.tokens + (now - self.updated) * self.per_second)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


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
            body = json.dumps(catalogue.conform(fb_api.public(event))).encode()
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


class EmulatorServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_limit_per_second: float = 25,
                 state_file: str | None = None) -> None:
        self.engine = Engine()
        self.faults = Faults()
        self.bucket = TokenBucket(rate_limit_per_second)
        self.state_file = state_file
        self.request_log: list[Json] = []
        self.delivery_log: list[Json] = []
        # Callables (method, path, status, body) told of every /v1 response (the contract tests' catalogue check).
        self.response_observers: list[Callable[[str, str, int, bytes], None]] = []
        self.idempotency: dict[str, tuple[str, int, bytes, str]] = {}  # key -> (fingerprint, status, body, req)
        self.key_locks: dict[str, threading.Lock] = {}
        self.key_locks_guard = threading.Lock()
        self.delivery = WebhookDelivery(self)
        self.engine.on_event = self.delivery.enqueue
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self.host, self.port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        if state_file:
            self.load_state(state_file)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> Engine:
        return self.engine

    def start(self) -> EmulatorServer:
        serve = threading.Thread(target=self.httpd.serve_forever, name="emulator-http", daemon=True)
        ticker = threading.Thread(target=self._tick, name="emulator-clock", daemon=True)
        self._threads = [serve, ticker]
        for thread in self._threads:
            thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(REALTIME_TICK_S):
            with self.engine.lock:
                try:
                    self.engine.tick_realtime()
                except Exception:  # noqa: BLE001 (keep the clock alive; the request path reports errors)
                    traceback.print_exc()

    def stop(self) -> None:
        self._stop.set()
        self.delivery.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.state_file:
            self.save_state(self.state_file)

    def reset(self) -> None:
        with self.engine.lock:
            self.engine.reset()
            self.engine.on_event = self.delivery.enqueue
            self.faults = Faults()
            self.request_log.clear()
            self.delivery_log.clear()
            self.idempotency.clear()
            with self.delivery.cond:
                self.delivery.queue.clear()

    def save_state(self, path: str) -> None:
        with self.engine.lock:
            state = {"objects": self.engine.objects, "events": [e["id"] for e in self.engine.events],
                     "pending_prorations": self.engine.pending_prorations,
                     "invoices_by_subscription": self.engine.invoices_by_subscription}
            with open(path, "w") as handle:
                json.dump(state, handle)

    def load_state(self, path: str) -> None:
        try:
            with open(path) as handle:
                state = json.load(handle)
        except FileNotFoundError:
            return
        with self.engine.lock:
            self.engine.objects = state["objects"]
            self.engine.events = [self.engine.objects["event"][i] for i in state["events"]]
            self.engine.pending_prorations = state.get("pending_prorations", {})
            self.engine.invoices_by_subscription = state.get("invoices_by_subscription", {})

    def key_lock(self, key: str) -> threading.Lock:
        with self.key_locks_guard:
            return self.key_locks.setdefault(key, threading.Lock())


def _handler_for(emulator: EmulatorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "stripe-emulator"
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus delayed
        # ACKs add ~40 ms to every keep-alive response.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def _send(self, status: int, body: bytes, request_id: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Request-Id", request_id)
            self.send_header("Stripe-Version", fb_api_version())
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(self, method: str) -> None:
            request_id = new_id("req")
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if split.path.startswith("/_emulator/"):
                self._admin(method, split.path, raw, split.query, request_id)
                return
            status, body, extra = self._v1(method, split.path, split.query, raw, request_id)
            self._send(status, body, request_id, extra)

        # --- Stripe's API ---------------------------------------------------------------
        def _v1(self, method: str, path: str, query: str, raw: bytes,
                request_id: str) -> tuple[int, bytes, dict[str, str]]:
            key = self.headers.get("Idempotency-Key")
            status = 500
            try:
                self._authenticate()
                if not emulator.bucket.take():
                    raise StripeApiError(429, "Request rate limit exceeded. Learn more about rate limits here "
                                              "https://stripe.com/docs/rate-limits.", code="rate_limit",
                                         type_="invalid_request_error")
                faults = emulator.faults
                if faults.latency_ms:
                    time.sleep(faults.latency_ms / 1000)
                if faults.rate_429 and faults.random.random() < faults.rate_429:
                    raise StripeApiError(429, "Request rate limit exceeded.", code="rate_limit")
                if faults.rate_500 and faults.random.random() < faults.rate_500:
                    raise StripeApiError(500, "An unknown error occurred", type_="api_error")
                if key and method in ("POST", "DELETE"):
                    status, body, extra = self._idempotent(method, path, query, raw, key, request_id)
                else:
                    status, body = self._execute(method, path, query, raw, request_id, key)
                    extra = {}
            except StripeApiError as error:
                status, body, extra = error.status, _error_body(error, request_id), {}
                if error.status == 429:
                    extra = {"Stripe-Should-Retry": "true"}
            with emulator.engine.lock:
                emulator.request_log.append({"method": method, "path": path, "status": status,
                                             "idempotency_key": key, "request_id": request_id, "ts": time.time()})
            for observer in list(emulator.response_observers):
                observer(method, path, status, body)
            return status, body, extra

        def _authenticate(self) -> None:
            header = self.headers.get("Authorization") or ""
            if not header:
                raise StripeApiError(401, "You did not provide an API key. You need to provide your API key in the "
                                          "Authorization header, using Bearer auth.")
            token = header.removeprefix("Bearer ").strip()
            if header.startswith("Basic "):
                import base64

                try:
                    token = base64.b64decode(header[6:]).decode().split(":")[0]
                except ValueError:
                    token = ""
            if not token.startswith(("sk_test_", "rk_test_", "sk_live_", "rk_live_")):
                masked = token[:8] + "*" * 4 + token[-4:] if len(token) > 12 else "****"
                raise StripeApiError(401, f"Invalid API Key provided: {masked}")

        def _idempotent(self, method: str, path: str, query: str, raw: bytes, key: str,
                        request_id: str) -> tuple[int, bytes, dict[str, str]]:
            fingerprint = hashlib.sha256(f"{method} {path}?{query}\n".encode() + raw).hexdigest()
            with emulator.key_lock(key):
                saved = emulator.idempotency.get(key)
                if saved is not None:
                    saved_fingerprint, saved_status, saved_body, original_request = saved
                    if saved_fingerprint != fingerprint:
                        raise StripeApiError(
                            400, "Keys for idempotent requests can only be used with the same parameters they were "
                                 f"first used with. Try using a key other than '{key}' if you meant to execute a "
                                 "different request.", type_="idempotency_error")
                    return saved_status, saved_body, {"Idempotent-Replayed": "true",
                                                      "Original-Request": original_request}
                try:
                    status, body = self._execute(method, path, query, raw, request_id, key)
                except StripeApiError as error:
                    status, body = error.status, _error_body(error, request_id)
                    # Stripe saves a result only once the endpoint began executing: a request that
                    # failed validation saves nothing, so the corrected retry with the same key runs.
                    if error.failed_validation or error.status >= 500:
                        return status, body, {}
                emulator.idempotency[key] = (fingerprint, status, body, request_id)
                return status, body, {"Original-Request": request_id}

        def _execute(self, method: str, path: str, query: str, raw: bytes, request_id: str, key: str | None,
                     raise_errors: bool = True) -> tuple[int, bytes]:
            try:
                params = self._params(method, path, query, raw)
                found = fb_api.match_route(method, path)
                if found is None:
                    if fb_api.known_path(path):
                        raise StripeApiError(405, f"Unrecognized request URL ({method}: {path}).")
                    raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}). Please see "
                                              "https://stripe.com/docs or we can help at https://support.stripe.com/.")
                handler, match = found
                validation.check_request(method, path, params)
                with emulator.engine.lock:
                    emulator.engine._current_request = {"id": request_id, "idempotency_key": key}
                    try:
                        result = handler(emulator.engine, match, params)
                    finally:
                        emulator.engine._current_request = {"id": None, "idempotency_key": None}
                return 200, json.dumps(catalogue.conform(result)).encode()
            except StripeApiError as error:
                if raise_errors:
                    raise
                return error.status, _error_body(error, request_id)
            except Exception:  # noqa: BLE001 (an emulator bug must still look like Stripe's api_error)
                traceback.print_exc()
                failure = StripeApiError(500, "An unknown error occurred", type_="api_error")
                if raise_errors:
                    raise failure from None
                return 500, _error_body(failure, request_id)

        def _params(self, method: str, path: str, query: str, raw: bytes) -> Json:
            if method == "GET" or method == "DELETE" and not raw:
                return parse_form(query)
            content_type = self.headers.get("Content-Type") or ""
            if content_type.startswith("multipart/form-data"):
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + raw
                )
                params: Json = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    filename = part.get_filename()
                    payload = cast(bytes, part.get_payload(decode=True) or b"")
                    params[str(name)] = (filename or "upload", payload) if filename is not None else payload.decode()
                return params
            try:
                return parse_form(raw.decode())
            except UnicodeDecodeError:
                raise StripeApiError(400, "Invalid request body encoding.") from None

        # --- the control surface ----------------------------------------------------------
        def _admin(self, method: str, path: str, raw: bytes, query: str, request_id: str) -> None:
            try:
                payload = json.loads(raw or b"{}") if raw else {}
                result = _admin_action(emulator, method, path.removeprefix("/_emulator/").strip("/"), payload)
                self._send(200, json.dumps(result, default=str).encode(), request_id)
            except StripeApiError as error:
                self._send(error.status, _error_body(error, request_id), request_id)
            except (ValueError, KeyError, TypeError) as error:
                self._send(400, json.dumps({"error": {"type": "invalid_request_error",
                                                      "message": f"bad emulator request: {error}"}}).encode(),
                           request_id)

    return Handler


def fb_api_version() -> str:
    from emulator.events.emission import API_VERSION

    return API_VERSION


def _error_body(error: StripeApiError, request_id: str) -> bytes:
    body = dict(error.body)
    body["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
    return json.dumps({"error": body}).encode()


def _admin_action(emulator: EmulatorServer, method: str, action: str, payload: Json) -> Any:
    engine = emulator.engine
    if action == "reset" and method == "POST":
        emulator.reset()
        return {"ok": True}
    if action == "faults":
        if method == "POST":
            emulator.faults.update(payload)
        return emulator.faults.as_dict()
    if action == "rate_limit" and method == "POST":
        emulator.bucket = TokenBucket(float(payload["per_second"]))
        return {"per_second": emulator.bucket.per_second}
    if action == "misbehave":
        if method == "POST":
            with engine.lock:
                engine.misbehave = dict(payload)
        return engine.misbehave
    if action == "requests":
        if method == "DELETE":
            with engine.lock:
                emulator.request_log.clear()
            return {"ok": True}
        with engine.lock:
            return {"data": list(emulator.request_log)}
    if action == "deliveries":
        with engine.lock:
            return {"data": list(emulator.delivery_log)}
    if action == "webhooks/flush":
        emulator.delivery.flush(float(payload.get("timeout", 60)))
        return {"ok": True}
    if action == "webhooks/config" and method == "POST":
        if "retry_delays_s" in payload:
            emulator.delivery.retry_delays = tuple(float(d) for d in payload["retry_delays_s"])
        if "max_attempts" in payload:
            emulator.delivery.max_attempts = int(payload["max_attempts"])
        return {"retry_delays_s": emulator.delivery.retry_delays, "max_attempts": emulator.delivery.max_attempts}
    if action == "seed" and method == "POST":
        from emulator.seed import seed_month

        with engine.lock:
            return seed_month(engine, customers=int(payload.get("customers", 300)), seed=int(payload.get("seed", 42)))
    if action == "billing/config":
        # Account billing settings: the days before renewal that invoice.upcoming is sent, and the
        # retry schedule with what happens after the last retry (emulator/billing/retry_schedule.py).
        with engine.lock:
            if method == "POST":
                update = dict(engine.billing_config)
                if "upcoming_days" in payload:
                    update["upcoming_days"] = int(payload["upcoming_days"])
                if "retries" in payload:
                    update["retries"] = retry_schedule.parse_retries(payload["retries"])
                if "after_retries" in payload:
                    update["after_retries"] = retry_schedule.parse_after_retries(payload["after_retries"],
                                                                                 update["after_retries"])
                engine.billing_config = update
            return copy.deepcopy(engine.billing_config)
    if action == "tick" and method == "POST":
        with engine.lock:
            engine.tick_realtime()
        return {"ok": True}
    parts = action.split("/")
    if len(parts) == 4 and parts[0] == "checkout" and parts[1] == "sessions" and parts[3] == "complete":
        with engine.lock:
            return fb_api.complete_checkout(engine, parts[2], str(payload.get("payment_method", "pm_card_visa")))
    if len(parts) == 3 and parts[0] == "webhook_endpoints" and parts[2] == "roll_secret" and method == "POST":
        # Test helper for the Dashboard-only "Roll secret" (returns the new secret once).
        with engine.lock:
            endpoint = engine.get("webhook_endpoint", parts[1], "webhook_endpoint")
            return roll_endpoint_secret(endpoint, float(payload.get("expires_in_s", 86400)), time.time())
    if len(parts) == 3 and parts[0] == "setup_intents" and parts[2] == "authenticate" and method == "POST":
        with engine.lock:
            return fb_api.public(setup_intent_routes.authenticate(engine, parts[1]))
    if len(parts) == 3 and parts[0] == "payment_intents" and parts[2] == "authenticate":
        with engine.lock:
            return fb_api.public(engine.authenticate_payment_intent(parts[1]))
    if len(parts) == 3 and parts[0] == "charges" and parts[2] == "dispute":
        # Test helper: the cardholder disputes an existing charge.
        with engine.lock:
            charge = engine.get("charge", parts[1], "charge")
            return fb_api.public(engine.create_dispute_for(charge, engine.now_for(charge.get("customer")),
                                                           reason=str(payload.get("reason", "fraudulent"))))
    if len(parts) == 3 and parts[0] == "charges" and parts[2] == "early_fraud_warning" and method == "POST":
        # Test helper: the issuer reports fraud on an existing charge (pm_card_createIssuerFraudRecord does
        # this at once); lets a warning sit on a card with other test behaviour, e.g. pm_card_refundFail.
        with engine.lock:
            charge = engine.get("charge", parts[1], "charge")
            return fb_api.public(engine.create_efw_for(charge, engine.now_for(charge.get("customer")),
                                                       str(payload.get("fraud_type", "made_with_stolen_card"))))
    if len(parts) == 3 and parts[0] == "early_fraud_warnings" and parts[2] == "set":
        with engine.lock:
            warning = engine.get("radar.early_fraud_warning", parts[1], "radar.early_fraud_warning")
            if "actionable" in payload:
                before = engine.snapshot(warning)
                warning["actionable"] = bool(payload["actionable"])
                engine.emit_update("radar.early_fraud_warning.updated", warning, before,
                                   created=engine.now_for(None))
            return fb_api.public(copy.deepcopy(warning))
    if len(parts) == 3 and parts[0] == "payment_method_domains" and parts[2] == "set" and method == "POST":
        # Test helper: a wallet's verification on the domain failed (or passed again).
        with engine.lock:
            return account_settings.set_domain_states(engine, parts[1], payload)
    if len(parts) == 3 and parts[0] == "disputes" and parts[2] == "escalate" and method == "POST":
        # Test helper: the cardholder's bank turns an inquiry into a chargeback.
        with engine.lock:
            dispute = engine.get("dispute", parts[1], "dispute")
            customer = engine.objects["charge"][dispute["charge"]].get("customer")
            at = max(engine.now_for(customer), int(dispute["created"]) + 1)  # never before it opened
            return fb_api.public(copy.deepcopy(engine.escalate_inquiry(parts[1], at)))
    if len(parts) == 3 and parts[0] == "disputes" and parts[2] == "set":
        # Test helper: move a dispute's deadline or status (e.g. to test "past due_by").
        with engine.lock:
            dispute = engine.get("dispute", parts[1], "dispute")
            if "due_by" in payload:
                dispute["evidence_details"]["due_by"] = int(payload["due_by"])
            if "status" in payload:
                dispute["status"] = str(payload["status"])
            return fb_api.public(copy.deepcopy(dispute))
    raise StripeApiError(404, f"Unknown emulator action: {method} /_emulator/{action}")


def serve_forever(host: str, port: int, state_file: str | None, rate_limit_per_second: float) -> None:
    server = EmulatorServer(host=host, port=port, rate_limit_per_second=rate_limit_per_second,
                            state_file=state_file).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
