"""The emulator's HTTP server: auth, idempotency, rate limit, faults, signed webhooks.

`EmulatorServer(port=0).start()` serves in a background thread (tests, demo);
`serve_forever()` is the `billing-ops emulator` command. /v1 speaks Stripe;
/_emulator/ is the test and benchmark control surface.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import traceback
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from emulator import endpoints as _endpoints  # noqa: F401 (importing it registers every /v1 route)
from emulator.admin import Faults, TokenBucket, admin_action
from emulator.engine import Engine
from emulator.events.delivery import WebhookDelivery
from emulator.objects import catalogue, validation
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, parse_form
from emulator.wire.routes import known_path, match_route

REALTIME_TICK_S = 5.0


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
            self.engine.load_events([self.engine.objects["event"][i] for i in state["events"]])
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
            self.send_header("Stripe-Version", api_version())
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
                found = match_route(method, path)
                if found is None:
                    if known_path(path):
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
                result = admin_action(emulator, method, path.removeprefix("/_emulator/").strip("/"), payload)
                self._send(200, json.dumps(result, default=str).encode(), request_id)
            except StripeApiError as error:
                self._send(error.status, _error_body(error, request_id), request_id)
            except (ValueError, KeyError, TypeError) as error:
                self._send(400, json.dumps({"error": {"type": "invalid_request_error",
                                                      "message": f"bad emulator request: {error}"}}).encode(),
                           request_id)

    return Handler


def api_version() -> str:
    from emulator.events.emission import API_VERSION

    return API_VERSION


def _error_body(error: StripeApiError, request_id: str) -> bytes:
    body = dict(error.body)
    body["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
    return json.dumps({"error": body}).encode()


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
