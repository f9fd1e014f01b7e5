"""The webhook receiver: POST /billing/webhook (and the /api/subscription/webhook
alias), GET /healthz, GET /metrics. It verifies, stores, and only then answers 2xx;
processing runs after the response (inline mode) or in `billing-ops worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services import metric_points, prometheus, webhooks
from webhooks.inbox_writer import InboxWriter, sqlite_database_path, writer_lock_path
from webhooks.rejections import RejectionCounter
from webhooks.writer_process import ProcessWriter

logger = logging.getLogger(__name__)
WEBHOOK_PATHS = ("/billing/webhook", "/api/subscription/webhook")


def create_app(runtime: Any, *, writer_process: bool = False) -> ReceiverApp:
    """`writer_process`: store through a writer process of this receiver's own
    (webhooks/writer_process.py; what serve-webhooks runs, WEBHOOK_WRITER_PROCESS) rather than
    writer threads in this process (InboxWriter). An in-memory SQLite database, which another
    process cannot open, always uses the threads."""
    inbox = InboxWriter(runtime)
    in_memory = runtime.engine.dialect.name == "sqlite" and sqlite_database_path(runtime.engine) is None
    process_writer = (ProcessWriter(runtime.settings, writer_lock_path(runtime.engine))
                      if writer_process and not in_memory else None)
    rejections = RejectionCounter(runtime)

    def check_database() -> float | None:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return webhooks.last_event_age_seconds(runtime.uow())

    async def healthz(_request: Request) -> Response:
        try:
            # In a thread: a locked or slow database must not stall the event loop (and every delivery).
            age = await asyncio.to_thread(check_database)
        except Exception:  # the DB being down is exactly what this reports
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({"ok": True, "database": "ok", "last_event_age_seconds": age})

    async def metrics(_request: Request) -> Response:
        return Response(prometheus.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # POST on the webhook paths never reaches these routes (ReceiverApp answers it); they are here
    # so any other method on those paths gets Starlette's 405.
    routes = [Route(path, _not_reached, methods=["POST"]) for path in WEBHOOK_PATHS]
    routes += [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if process_writer is not None:
            await process_writer.start()
        yield
        if process_writer is not None:
            await process_writer.close()
        # Deliveries already verified are stored, and refusals counted, before the process exits.
        await asyncio.to_thread(inbox.close)
        await asyncio.to_thread(rejections.close)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.rejections = rejections
    return ReceiverApp(runtime, inbox, rejections, app, process_writer=process_writer)


async def _not_reached(_request: Request) -> Response:
    raise AssertionError("POST on a webhook path is answered by ReceiverApp")


class ReceiverApp:
    """The receiver as a plain ASGI app: POST on a webhook path is handled right here (read the
    body under the cap, verify the signature on the raw bytes, hand the event to the group-commit
    writer, answer once it is committed), with no routing, Request or Response objects per
    delivery; everything else (GET /healthz and /metrics, 404/405, the lifespan) goes to Starlette."""

    def __init__(self, runtime: Any, inbox: InboxWriter, rejections: RejectionCounter,
                 fallback: Starlette, *, process_writer: ProcessWriter | None = None) -> None:
        self.runtime = runtime
        self.inbox = inbox
        self.process_writer = process_writer
        # The outcome once the event is committed: the writer process's, else the writer threads'.
        self.store = process_writer.store if process_writer is not None else inbox.store
        self.rejections = rejections
        self.fallback = fallback
        self.state = fallback.state
        self._secrets_for: Any = None
        self._secrets: list[str] = []

    def _secret_values(self) -> list[str]:
        """The configured signing secrets, unwrapped once per settings object (not per request)."""
        settings = self.runtime.settings
        if settings is not self._secrets_for:
            self._secrets, self._secrets_for = settings.webhook_secret_values, settings
        return self._secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in WEBHOOK_PATHS:
            await self._webhook(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        runtime = self.runtime
        secrets = self._secret_values()
        if not secrets:
            # Refuse rather than "200 and ignore": Stripe keeps retrying until it is configured.
            await _answer(send, 503, {"error": "no webhook signing secret is configured"})
            return
        declared: bytes | None = None
        signature: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length" and declared is None:
                declared = value
            elif name == b"stripe-signature" and signature is None:
                signature = value
        if declared and declared.isdigit() and (len(declared) > 9 or int(declared) > webhooks.MAX_BODY_BYTES):
            await _answer_too_large(send)
            return
        # The body, counted while it streams: never more than the cap plus one chunk in memory.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender is gone; nobody reads an answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > webhooks.MAX_BODY_BYTES:
                await _answer_too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            # HMAC over the raw bytes first; only a verified body is parsed (orjson).
            event = webhooks.verify_signature(body, signature.decode("latin-1") if signature is not None else None,
                                              secrets)
        except webhooks.SignatureError as error:
            _count_rejection(error.reason, self.rejections)
            await _answer(send, 400, {"error": error.reason})
            return
        if not webhooks.livemode_matches(event, runtime.settings):
            # Another mode's event (e.g. a live event on a test console) is never stored or processed.
            prometheus.WEBHOOK_DELIVERIES.labels("livemode_mismatch").inc()
            self.rejections.add(metric_points.WEBHOOK_LIVEMODE_MISMATCH, webhooks.LIVEMODE_MISMATCH)
            await _answer(send, 400, {"error": webhooks.LIVEMODE_MISMATCH})
            return
        # Commit before answering (an error here is a 500, so Stripe redelivers); the effects
        # run after the response, or in the worker.
        try:
            outcome = await self.store(event)
        except Exception:
            logger.exception("could not store webhook event %s", event["id"])
            await _answer(send, 500, {"error": "the event could not be stored; it will be redelivered"})
            return
        prometheus.ACK_SECONDS.observe(time.perf_counter() - started)
        await _answer(send, 200, {"received": True, "status": outcome})
        if outcome == "stored" and runtime.settings.webhook_process_inline:
            try:
                await asyncio.to_thread(webhooks.process_event, runtime, event["id"])
            except Exception:  # the event stays stored and retryable; the worker picks it up
                logger.exception("inline processing of %s failed", event["id"])


async def _answer(send: Any, status: int, content: dict[str, Any], *,
                  close: bool = False) -> None:
    body = orjson.dumps(content)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer_too_large(send: Any) -> None:
    prometheus.WEBHOOK_DELIVERIES.labels("rejected").inc()
    # The rest of the body is never read, so the connection cannot be reused.
    await _answer(send, 413, {"error": "body too large"}, close=True)


def _count_rejection(reason: str, rejections: RejectionCounter) -> None:
    if reason in webhooks.INVALID_SIGNATURE_REASONS:
        # Counted in memory and written in batches off the event loop (see RejectionCounter).
        prometheus.WEBHOOK_DELIVERIES.labels("invalid_signature").inc()
        rejections.add(metric_points.WEBHOOK_INVALID_SIGNATURE, reason)
    else:
        prometheus.WEBHOOK_DELIVERIES.labels("rejected").inc()


def create_app_from_env() -> ReceiverApp:
    """Factory for `uvicorn --factory` with several worker processes (settings from the environment)."""
    from services.config import load_settings
    from services.observability import configure_logging, init_sentry
    from services.runtime import Runtime

    runtime = Runtime(load_settings())
    configure_logging(settings=runtime.settings)  # scrubs this deployment's own secret values too
    init_sentry(runtime.settings)
    return create_app(runtime, writer_process=runtime.settings.webhook_writer_process)
