"""The webhook receiver: POST /billing/webhook (and the /api/subscription/webhook
alias), GET /healthz, GET /metrics. It verifies, stores, and only then answers 2xx;
processing runs after the response (inline mode) or in `billing-ops worker`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services import metric_points, prometheus, webhooks

WEBHOOK_PATHS = ("/billing/webhook", "/api/subscription/webhook")


def create_app(runtime: Any) -> Starlette:
    inbox = webhooks.InboxWriter(runtime)
    rejections = webhooks.RejectionCounter(runtime)

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        secrets = runtime.settings.webhook_secret_values
        if not secrets:
            # Refuse rather than "200 and ignore": Stripe keeps retrying until it is configured.
            return JSONResponse({"error": "no webhook signing secret is configured"}, status_code=503)
        try:
            body = await _read_body(request)
        except ClientDisconnect:  # the sender is gone; nobody reads an answer
            return Response(status_code=400)
        if body is None:
            return _too_large()
        try:
            event = webhooks.verify_signature(body, request.headers.get("stripe-signature"), secrets)
        except webhooks.SignatureError as error:
            return _rejected(error.reason, rejections)
        if not webhooks.livemode_matches(event, runtime.settings):
            # Another mode's event (e.g. a live event on a test console) is never stored or processed.
            prometheus.WEBHOOK_DELIVERIES.labels("livemode_mismatch").inc()
            rejections.add(metric_points.WEBHOOK_LIVEMODE_MISMATCH, webhooks.LIVEMODE_MISMATCH)
            return JSONResponse({"error": webhooks.LIVEMODE_MISMATCH}, status_code=400)
        # Commit before answering (an error here is a 500, so Stripe redelivers); the effects
        # run after the response, or in the worker.
        outcome = await asyncio.wrap_future(inbox.submit(event))
        background = None
        if outcome == "stored" and runtime.settings.webhook_process_inline:
            background = BackgroundTask(webhooks.process_event, runtime, event["id"])
        prometheus.ACK_SECONDS.observe(time.perf_counter() - started)
        return JSONResponse({"received": True, "status": outcome}, background=background)

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

    routes = [Route(path, receive, methods=["POST"]) for path in WEBHOOK_PATHS]
    routes += [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        # Deliveries already verified are stored, and refusals counted, before the process exits.
        await asyncio.to_thread(inbox.close)
        await asyncio.to_thread(rejections.close)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.rejections = rejections
    return app


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it is over MAX_BODY_BYTES: a declared Content-Length over the cap
    is refused before reading, and a chunked (or lying) body is counted while it streams, so
    the receiver never holds more than the cap plus one chunk."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and (
            len(declared) > 9 or int(declared) > webhooks.MAX_BODY_BYTES):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > webhooks.MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> Response:
    prometheus.WEBHOOK_DELIVERIES.labels("rejected").inc()
    # The rest of the body is never read, so the connection cannot be reused.
    return JSONResponse({"error": "body too large"}, status_code=413, headers={"Connection": "close"})


def create_app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` with several worker processes (settings from the environment)."""
    from services.config import load_settings
    from services.observability import configure_logging, init_sentry
    from services.runtime import Runtime

    runtime = Runtime(load_settings())
    configure_logging(settings=runtime.settings)  # scrubs this deployment's own secret values too
    init_sentry(runtime.settings)
    return create_app(runtime)


def _rejected(reason: str, rejections: webhooks.RejectionCounter) -> Response:
    if reason in webhooks.INVALID_SIGNATURE_REASONS:
        # Counted in memory and written in batches off the event loop (see RejectionCounter).
        prometheus.WEBHOOK_DELIVERIES.labels("invalid_signature").inc()
        rejections.add(metric_points.WEBHOOK_INVALID_SIGNATURE, reason)
    else:
        prometheus.WEBHOOK_DELIVERIES.labels("rejected").inc()
    return JSONResponse({"error": reason}, status_code=400)
