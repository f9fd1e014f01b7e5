"""What benchmarks/webhooks.py measures the receiver against, each served by uvicorn like ours:

- `ceiling`: a plain ASGI app that reads the body and answers 200 (the same load on something
  that does nothing: what HTTP on this machine allows).
- `create_peer`: the simplest receiver a team would write: a Starlette handler that calls
  `stripe.Webhook.construct_event` and inserts one row per request with SQLAlchemy (in the
  thread pool, as FastAPI runs a `def` endpoint), answering 200 after its commit. On SQLite it
  gets the same WAL + synchronous=NORMAL pragmas ours uses, so both are equally durable.

Run with `uvicorn benchmarks.webhook_peers:ceiling` or `uvicorn --factory benchmarks.webhook_peers:create_peer`
(PEER_DATABASE_URL and PEER_WEBHOOK_SECRET from the environment).
"""

from __future__ import annotations

import os
import time
from typing import Any

PEER_TABLE = "peer_events"


async def ceiling(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


def create_peer() -> Any:
    import stripe
    from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, create_engine, event, exc, func
    from sqlalchemy.dialects import postgresql, sqlite
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    url = os.environ["PEER_DATABASE_URL"]
    secret = os.environ["PEER_WEBHOOK_SECRET"]
    engine = create_engine(url, pool_size=20) if url.startswith("postgresql") else create_engine(url)
    if url.startswith("sqlite"):
        def pragmas(conn: Any, _record: Any) -> None:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
        event.listen(engine, "connect", pragmas)
    metadata = MetaData()
    table = Table(PEER_TABLE, metadata, Column("id", String(255), primary_key=True), Column("type", String(255)),
                  Column("payload", JSON), Column("received_at", DateTime(timezone=True), server_default=func.now()))
    try:
        metadata.create_all(engine)
    except exc.DBAPIError:  # another worker process of this peer created it at the same moment
        metadata.create_all(engine)
    dialect_insert = postgresql.insert if url.startswith("postgresql") else sqlite.insert

    def store(event_obj: Any) -> None:
        with engine.begin() as conn:
            conn.execute(dialect_insert(table).values(id=event_obj["id"], type=event_obj["type"],
                                                      payload=event_obj.to_dict()).on_conflict_do_nothing())

    async def webhook(request: Request) -> Response:
        payload = await request.body()
        try:
            event_obj = stripe.Webhook.construct_event(payload, request.headers.get("stripe-signature", ""), secret)
        except (ValueError, stripe.SignatureVerificationError):
            return Response(status_code=400)
        await run_in_threadpool(store, event_obj)
        return JSONResponse({"received": True})

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/billing/webhook", webhook, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def commit_latency_seconds(database_url: str, commits: int = 100) -> float:
    """Mean time of a one-row commit, one after another, as ours commits (PostgreSQL: one statement
    in autocommit, synchronous_commit as the server has it; SQLite: WAL, synchronous=NORMAL). A
    receiver that answers only after a commit, driven by C connections with one request each, answers
    at most C deliveries per commit: C / this bounds it, whatever its code."""
    from db.session import dispose_engines, get_engine

    engine = get_engine(database_url)
    raw: Any = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("CREATE TABLE commit_probe (n integer)")
        raw.commit()
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            raw.driver_connection.autocommit = True
        insert = "INSERT INTO commit_probe (n) VALUES (%s)" if postgres else "INSERT INTO commit_probe (n) VALUES (?)"
        began = time.perf_counter()
        for n in range(commits):
            cursor.execute(insert, (n,))
            if not postgres:
                raw.commit()
        elapsed = time.perf_counter() - began
        cursor.execute("DROP TABLE commit_probe")
        raw.commit()
    finally:
        raw.close()
        dispose_engines()
    return elapsed / commits
