"""Webhook receiver throughput: ack latency p50/p99 and sustained events/s.

Runs the real receiver (`billing-ops serve-webhooks`: uvicorn with uvloop/httptools, one
process) on loopback, then posts N signed events from a few client threads with httpx; on
SQLite, and on PostgreSQL when it is reachable. Afterwards it checks every event was stored
once with its stripe.webhook.received point. The load generator shares the 2 cores.
Usage: python benchmarks/webhooks.py [events] [threads]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.scratch_postgres import scratch_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402

SECRET = "whsec_benchmark_secret_value_0123456789"
WORKERS = 1  # raise on a machine with spare cores (serve-webhooks --workers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signed(index: int) -> tuple[bytes, str]:
    body = json.dumps({"id": f"evt_bench_{uuid.uuid4().hex}", "object": "event", "type": "invoice.paid",
                       "created": int(time.time()), "livemode": False, "api_version": "2026-10-28.endive",
                       "data": {"object": {"id": f"in_bench_{index}", "object": "invoice"}}}).encode()
    ts = int(time.time())
    signature = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={ts},v1={signature}"


def run(label: str, database_url: str, events: int, threads: int) -> None:
    upgrade(database_url)
    port = _free_port()
    # The receiver runs in its own process (as `billing-ops serve-webhooks` does), so the
    # load generator's threads do not share its GIL.
    env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_API_KEY": "sk_test_bench",
           "STRIPE_WEBHOOK_SECRETS": SECRET}
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve-webhooks", "--port", str(port),
                               "--workers", str(WORKERS)],
                              cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    payloads = [_signed(i) for i in range(events)]
    latencies: list[float] = []
    lock = threading.Lock()

    def client(chunk: list[tuple[bytes, str]]) -> None:
        own: list[float] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for body, signature in chunk:
                started = time.perf_counter()
                response = http.post("/billing/webhook", content=body, headers={"Stripe-Signature": signature})
                own.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
        with lock:
            latencies.extend(own)

    chunks = [payloads[i::threads] for i in range(threads)]
    began = time.perf_counter()
    pool = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
    for worker in pool:
        worker.start()
    for worker in pool:
        worker.join()
    elapsed = time.perf_counter() - began
    server.terminate()
    server.wait(timeout=10)
    stored = _count_stored(database_url)
    assert stored == events, f"{stored} of {events} events stored"
    ordered = sorted(latencies)
    print(f"{label}: {events} signed events from {threads} clients in {elapsed:.1f} s = "
          f"{events / elapsed:.0f} events/s; ack p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, "
          f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms (targets: p99 < 50 ms, >= 500 events/s)")


def _count_stored(database_url: str) -> int:
    from sqlalchemy import func, select

    from db.models import MetricPoint, StripeEvent
    from db.session import UnitOfWork
    from services.metric_points import WEBHOOK_RECEIVED

    with UnitOfWork(database_url) as uow:
        events = uow.session.execute(select(func.count()).select_from(StripeEvent)).scalar_one()
        received = uow.session.execute(select(func.count()).where(MetricPoint.name == WEBHOOK_RECEIVED))
        assert received.scalar_one() == events, "one stripe.webhook.received point per stored event"
    return int(events)


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with tempfile.TemporaryDirectory() as scratch:
        run("SQLite", f"sqlite:///{scratch}/bench.db", events, threads)
    with scratch_postgres("bo_bench") as url:
        if url is not None:
            run("PostgreSQL", url, events, threads)


if __name__ == "__main__":
    main()
