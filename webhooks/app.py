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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services import prometheus, webhooks

WEBHOOK_PATHS = ("/billing/webhook", "/api/subscription/webhook")


def create_app(runtime: Any) -> Starlette:
    inbox = webhooks.InboxWriter(runtime)

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        secrets = runtime.settings.webhook_secret_values
        if not secrets:
            # Refuse rather than "200 and ignore": Stripe keeps retrying until it is configured.
            return JSONResponse({"error": "no webhook signing secret is configured"}, status_code=503)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > webhooks.MAX_BODY_BYTES:
            return _rejected("body too large", runtime)
        body = await request.body()
        try:
            event = webhooks.verify_signature(body, request.headers.get("stripe-signature"), secrets)
        except webhooks.SignatureError as error:
            return _rejected(error.reason, runtime)
        # Commit before answering (an error here is a 500, so Stripe redelivers); the effects
        # run after the response, or in the worker.
        outcome = await asyncio.wrap_future(inbox.submit(event))
        background = None
        if outcome == "stored" and runtime.settings.webhook_process_inline:
            background = BackgroundTask(webhooks.process_event, runtime, event["id"])
        prometheus.ACK_SECONDS.observe(time.perf_counter() - started)
        return JSONResponse({"received": True, "status": outcome}, background=background)

    async def healthz(_request: Request) -> Response:
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            age = webhooks.last_event_age_seconds(runtime.uow())
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
        # Deliveries already verified are stored before the process exits.
        await asyncio.to_thread(inbox.close)

    return Starlette(routes=routes, lifespan=lifespan)


def create_app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` with several worker processes (settings from the environment)."""
    from services.config import load_settings
    from services.observability import configure_logging, init_sentry
    from services.runtime import Runtime

    runtime = Runtime(load_settings())
    configure_logging()
    init_sentry(runtime.settings)
    return create_app(runtime)


def _rejected(reason: str, runtime: Any) -> Response:
    if reason in ("no signature matches", "timestamp outside the tolerance", "missing Stripe-Signature header",
                  "malformed Stripe-Signature header"):
        webhooks.record_invalid_signature(runtime, reason)
    else:
        prometheus.WEBHOOK_DELIVERIES.labels("rejected").inc()
    return JSONResponse({"error": reason}, status_code=400)

