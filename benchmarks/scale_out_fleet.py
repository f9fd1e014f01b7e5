"""The scale-out set-up shared by benchmarks/scale_out.py and tests/integration/test_scale_out_postgres.py:
receivers (`billing-ops serve-webhooks`) and workers (`billing-ops worker`) as separate OS processes
on one database, the Stripe emulator (its own process) as the workers' Stripe, signed unique events,
a delivery plan with duplicates to random receivers, a Python HTTP generator, and the exactly-once
check read from the database and the emulator's request log.

The events are `invoice.paid` and `charge.succeeded`, one per object, for objects the emulator does
not hold. Under the worker's re-read rule (services/event_rereads.py) an event's copy is used as it
is unless another stored event of the same object and the same second carries a different copy that
`previous_attributes` cannot order, so these need no Stripe read: the worker stores the copy (one
invoice or charge row each). Every REREAD_EVERY-th event (an invoice.paid: 5 % of the events) has
such a sibling, stored and processed before the run, as an earlier delivery would have left it: an
`invoice.payment_action_required` of the same second whose copy is still `open` (the invoice needed
action, then was paid in that second). Its object is re-read once per processing (one GET in the
emulator's log; resource_missing, so the event's copy is stored): those objects must show exactly
one GET each and every other object none, so an event processed twice would show a second GET."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_PATH = "/billing/webhook"
CUSTOMER_ID = "cus_scaleout"  # the invoices' customer, stored before the run (as a sync would)
KINDS = ("invoice.paid", "charge.succeeded")
REREAD_EVERY = 20  # every 20th event (n = 0, 20, 40, ...: an invoice.paid) must be re-read: 5 %


@dataclass(frozen=True)
class SignedEvent:
    id: str
    kind: str
    object_id: str
    body: bytes
    signature: str
    rereads: bool = False  # a same-second sibling with another copy is stored: the worker re-reads the object


def make_events(count: int, secret: str, run: str) -> list[SignedEvent]:
    """`count` unique events, invoice.paid and charge.succeeded alternately, signed as Stripe signs
    (HMAC-SHA256 over `t.payload` with the endpoint's whsec_ secret, header `t=…,v1=…`); every
    REREAD_EVERY-th is marked `rereads` (store its sibling with `store_earlier_deliveries`)."""
    now = int(time.time())
    events = []
    for n in range(count):
        kind = KINDS[n % 2]
        if kind == "invoice.paid":
            obj: dict[str, Any] = {"id": f"in_so{run}n{n}", "object": "invoice", "customer": CUSTOMER_ID,
                                   "status": "paid", "amount_due": 2000, "amount_paid": 2000, "currency": "usd",
                                   "created": now, "status_transitions": {"paid_at": now}}
        else:
            obj = {"id": f"ch_so{run}n{n}", "object": "charge", "customer": None, "amount": 2000, "currency": "usd",
                   "status": "succeeded", "paid": True, "created": now}
        event_id = f"evt_so{run}n{n}"
        body = json.dumps({"id": event_id, "object": "event", "type": kind, "created": now, "livemode": False,
                           "api_version": "2026-10-28.endive", "pending_webhooks": 1, "data": {"object": obj}},
                          separators=(",", ":")).encode()
        events.append(SignedEvent(event_id, kind, obj["id"], body, sign(body, secret, now),
                                  rereads=n % REREAD_EVERY == 0))
    return events


def earlier_delivery(event: SignedEvent) -> dict[str, Any]:
    """The sibling that makes `event`'s copy possibly stale: the same invoice, the same second, an
    `invoice.payment_action_required` whose copy is still open (nothing tells which copy is newer)."""
    payload = json.loads(event.body)
    invoice = dict(payload["data"]["object"], status="open", amount_paid=0, status_transitions={"paid_at": None})
    return dict(payload, id=f"{event.id}a", type="invoice.payment_action_required", data={"object": invoice})


def earlier_ids(events: Sequence[SignedEvent]) -> set[str]:
    return {f"{e.id}a" for e in events if e.rereads}


def store_earlier_deliveries(database_url: str, events: Sequence[SignedEvent]) -> int:
    """Store the siblings of the `rereads` events as already processed (delivered and applied
    before the run); returns how many."""
    from db.models import StripeEvent
    from db.models.base import from_unix, utcnow
    from db.session import UnitOfWork, dispose_engines

    siblings = [earlier_delivery(e) for e in events if e.rereads]
    now = utcnow()
    with UnitOfWork(database_url) as uow:
        for sibling in siblings:
            uow.session.add(StripeEvent(
                id=sibling["id"], type=sibling["type"], created=from_unix(sibling["created"]) or now, livemode=False,
                api_version=sibling["api_version"], payload=sibling, source="webhook", received_at=now,
                status="processed", processed_at=now, attempts=1, object_id=sibling["data"]["object"]["id"],
                duplicate_deliveries=0))
        uow.commit()
    dispose_engines()
    return len(siblings)


def sign(body: bytes, secret: str, at: int | None = None) -> str:
    """The Stripe-Signature header for `body` signed at `at` (now by default). Stripe signs every
    delivery attempt afresh, and the receiver refuses a timestamp over 5 minutes old, so a delivery
    sent later than that after its event was made (a long run, a redelivery) must be signed again."""
    ts = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def delivery_plan(count: int, duplicate_share: float, receivers: int, seed: int) -> tuple[list[tuple[int, int]], int]:
    """(event index, receiver index) for every delivery, shuffled: each event once, `duplicate_share`
    of them a second time, every copy to a random receiver (so a copy may race its original on
    another receiver, or arrive first). Returns the plan and the number of second copies."""
    rng = random.Random(seed)
    copies = rng.sample(range(count), round(count * duplicate_share))
    plan = [(n, rng.randrange(receivers)) for n in range(count)] + [(n, rng.randrange(receivers)) for n in copies]
    rng.shuffle(plan)
    return plan, len(copies)


# --- processes -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(database_url: str, secret: str, stripe_api_base: str | None) -> dict[str, str]:
    """The settings every receiver and worker reads (services/config.py), as a deployment would set them."""
    env = {k: v for k, v in os.environ.items() if k not in ("BILLING_OPS_ENV_FILE", "DATABASE_URL")}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=database_url, STRIPE_API_KEY="sk_test_scaleout0123456789",
               STRIPE_MODE="test", STRIPE_WEBHOOK_SECRETS=secret, WEBHOOK_PROCESS_INLINE="false",
               # The emulator is told to allow far more; the client-side limiter must not be what is measured.
               STRIPE_RATE_LIMIT_PER_SECOND="100000",
               WEBHOOK_KEEP_ALIVE_SECONDS="60", RECONCILE_CRON_ENABLED="false")
    if stripe_api_base:
        env["STRIPE_API_BASE"] = stripe_api_base
    return env


@dataclass
class Fleet:
    """The OS processes of one run, each in its own session (as on its own machine); `close` ends
    every one of them, SIGTERM then SIGKILL, also when the run failed."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen([sys.executable, *args], cwd=self.workdir, env=env or self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process, log))
        return process

    def emulator(self) -> str:
        port = free_port()
        process = self.start("emulator", ["-m", "cli", "emulator", "--port", str(port), "--rate-limit", "100000"],
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        base = f"http://127.0.0.1:{port}"
        _wait_until(lambda: httpx.get(f"{base}/_emulator/requests", timeout=2).status_code == 200, process, "emulator")
        return base

    def receivers(self, count: int) -> list[int]:
        ports = []
        for n in range(count):
            port = free_port()
            process = self.start(f"receiver{n}", ["-m", "cli", "serve-webhooks", "--port", str(port), "--workers", "1"])
            ports.append(port)
            _wait_until(lambda p=port: httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=2).status_code == 200,
                        process, f"receiver{n}")
        return ports

    def ceiling(self) -> int:
        """The do-nothing ASGI app (benchmarks/webhook_peers.py): what the generator reaches at most."""
        port = free_port()
        process = self.start("ceiling", ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level",
                                         "warning", "--no-access-log", "--http", "httptools", "--loop", "uvloop",
                                         "benchmarks.webhook_peers:ceiling"],
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        _wait_until(lambda: httpx.post(f"http://127.0.0.1:{port}/", content=b"", timeout=2).status_code == 200,
                    process, "ceiling")
        return port

    def workers(self, count: int) -> list[subprocess.Popen[bytes]]:
        return [self.start(f"worker{n}", ["-m", "cli", "worker"]) for n in range(count)]

    def stop(self, names: Sequence[str] | None = None) -> None:
        """End the named processes (all when None), SIGTERM first so uvicorn flushes its writer."""
        chosen = [entry for entry in self.processes if names is None or entry[0] in names]
        for _name, process, _log in chosen:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        for _name, process, log in chosen:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            log.close()
        self.processes = [entry for entry in self.processes if entry not in chosen]

    def named(self, *prefixes: str) -> list[str]:
        return [name for name, _process, _log in self.processes if name.startswith(prefixes)]

    def pids(self, *prefixes: str) -> list[int]:
        return [process.pid for name, process, _log in self.processes if name.startswith(prefixes)]

    def close(self) -> None:
        self.stop()

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the child's own session: it and anything it started


def _wait_until(ready: Any, process: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not start within {timeout:.0f} s")


# --- the Python generator ----------------------------------------------------------------------------
@dataclass
class Delivered:
    statuses: Counter[int] = field(default_factory=Counter)  # HTTP status per answered POST
    outcomes: Counter[str] = field(default_factory=Counter)  # the receiver's "status": stored | duplicate | ...
    stored_ids: list[str] = field(default_factory=list)  # ids answered "stored" (one per event if exactly once)
    acked: Counter[int] = field(default_factory=Counter)  # event index -> 200 answers
    transport_errors: int = 0  # POSTs with no answer, sent again (as Stripe redelivers)
    unanswered: int = 0  # deliveries still unanswered after the retries
    seconds: float = 0.0

    def merge(self, other: Delivered) -> None:
        self.statuses.update(other.statuses)
        self.outcomes.update(other.outcomes)
        self.stored_ids += other.stored_ids
        self.acked.update(other.acked)
        self.transport_errors += other.transport_errors
        self.unanswered += other.unanswered


def deliver(plan: Sequence[tuple[int, int]], events: Sequence[SignedEvent], ports: Sequence[int], *,
            threads: int = 16, retries: int = 5, stop_after: float | None = None,
            secret: str | None = None) -> Delivered:
    """POST every planned delivery over TCP (httpx, keep-alive, one client per thread and receiver);
    with `stop_after`, only those begun within that many seconds; with `secret`, each POST signed
    when it is sent (as Stripe does), else with the event's signature from make_events."""
    total = Delivered()
    lock = threading.Lock()
    stop_at = None if stop_after is None else time.monotonic() + stop_after

    def run(share: Sequence[tuple[int, int]]) -> None:
        own = Delivered()
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) for port in ports]
        try:
            for index, receiver in share:
                if stop_at is not None and time.monotonic() > stop_at:
                    break
                event = events[index]
                for _attempt in range(retries + 1):
                    signature = sign(event.body, secret) if secret else event.signature
                    headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
                    try:
                        response = clients[receiver].post(WEBHOOK_PATH, content=event.body, headers=headers)
                    except httpx.TransportError:
                        own.transport_errors += 1
                        continue
                    own.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        own.acked[index] += 1
                        outcome = str(response.json().get("status"))
                        own.outcomes[outcome] += 1
                        if outcome == "stored":
                            own.stored_ids.append(event.id)
                    break
                else:
                    own.unanswered += 1
        finally:
            for client in clients:
                client.close()
        with lock:
            total.merge(own)

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(run, plan[t::threads]) for t in range(threads)]:
            future.result()
    total.seconds = time.perf_counter() - began
    return total


# --- the database side ---------------------------------------------------------------------------------
def prepare_database(database_url: str) -> None:
    """Migrate, and store the invoices' customer (as `billing-ops sync` would have)."""
    from db.migrate import upgrade
    from db.session import UnitOfWork, dispose_engines
    from services import stripe_mapping

    upgrade(database_url)
    with UnitOfWork(database_url) as uow:
        stripe_mapping.upsert_customer(uow, {"id": CUSTOMER_ID, "object": "customer", "email": None},
                                       observed_at=int(time.time()))
        uow.commit()
    dispose_engines()


def status_counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from db.models import StripeEvent
    from db.session import UnitOfWork

    with UnitOfWork(database_url) as uow:
        rows = uow.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all()
    return {str(status): int(count) for status, count in rows}


def wait_drained(database_url: str, expected: int, *, stall_seconds: float = 120) -> float:
    """Seconds until `expected` events are processed; fails when nothing moves for `stall_seconds`."""
    began = time.monotonic()
    last, moved = -1, time.monotonic()
    while True:
        counts = status_counts(database_url)
        done = counts.get("processed", 0)
        if done >= expected and sum(counts.values()) == done:
            return time.monotonic() - began
        if done != last:
            last, moved = done, time.monotonic()
        elif time.monotonic() - moved > stall_seconds:
            raise RuntimeError(f"workers stalled at {counts}")
        time.sleep(0.5)


def exactly_once(database_url: str, events: Sequence[SignedEvent], emulator_base: str | None) -> dict[str, Any]:
    """What the database (and the emulator's request log) hold for these events."""
    from sqlalchemy import func, select

    from db.models import Charge, Invoice, MetricPoint, StripeEvent
    from db.session import UnitOfWork, dispose_engines
    from services.metric_points import INVOICE_PAID, WEBHOOK_DUPLICATE

    ids = {e.id for e in events}
    earlier = earlier_ids(events)
    with UnitOfWork(database_url) as uow:
        every = uow.session.execute(select(StripeEvent.id, StripeEvent.status, StripeEvent.attempts,
                                           StripeEvent.duplicate_deliveries)).all()
        rows = [r for r in every if r.id not in earlier]
        invoices = set(uow.session.execute(select(Invoice.id)).scalars())
        charges = set(uow.session.execute(select(Charge.id)).scalars())
        invoice_points = uow.session.execute(select(func.count()).where(MetricPoint.name == INVOICE_PAID)).scalar_one()
        duplicate_points = uow.session.execute(
            select(func.count()).where(MetricPoint.name == WEBHOOK_DUPLICATE)).scalar_one()
    dispose_engines()
    stored = [r.id for r in rows]
    objects = {e.object_id for e in events}
    result: dict[str, Any] = {
        "stored": len(stored), "stored_once": len(stored) == len(set(stored)) and set(stored) == ids
        and len(every) - len(rows) == len(earlier),
        "statuses": dict(Counter(str(r.status) for r in rows)),
        "attempts": dict(Counter(int(r.attempts) for r in rows)),
        "duplicate_deliveries": sum(int(r.duplicate_deliveries) for r in rows),
        "events_with_copies": sum(1 for r in rows if r.duplicate_deliveries),
        "duplicate_points": int(duplicate_points),
        "effect_rows": len((invoices | charges) & objects), "invoice_paid_points": int(invoice_points),
        "invoices": sum(1 for e in events if e.kind == "invoice.paid"),
    }
    if emulator_base:
        log = httpx.get(f"{emulator_base}/_emulator/requests", timeout=120).json()["data"]
        asked = [(str(r["method"]), str(r["path"])) for r in log if str(r["path"]).startswith("/v1/")]
        reads = Counter(path.rsplit("/", 1)[-1] for method, path in asked
                        if method == "GET" and path.startswith(("/v1/invoices/", "/v1/charges/")))
        reread = {e.object_id for e in events if e.rereads}
        result["stripe_reads"] = dict(Counter(reads[o] for o in objects))  # reads per object -> objects
        result["rereads_expected"] = len(reread)
        result["stripe_requests"] = len(asked)  # every /v1 request the workers made
        # Exactly one GET for each object whose copy can be stale, none for any other, nothing else asked.
        result["rereads_match"] = (all(reads[o] == (1 if o in reread else 0) for o in objects)
                                   and len(asked) == len(reread))
    return result
