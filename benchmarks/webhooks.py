"""Webhook receiver throughput and ack latency, measured with a load generator that is not the
bottleneck.

In one invocation, on SQLite and on PostgreSQL (a scratch database when 127.0.0.1:5432 is
reachable), it drives with `wrk` (Debian's package: `apt-get install wrk`):

- the ceiling: a plain ASGI app under uvicorn that answers 200 and does nothing;
- ours: `billing-ops serve-webhooks --workers W`;
- the peer: the simplest receiver a team would write (benchmarks/webhook_peers.py: Starlette +
  `stripe.Webhook.construct_event` + one SQLAlchemy INSERT per request), 1 and W processes.

Each target gets its own freshly pre-signed, unique events (one file per wrk thread, replayed by
benchmarks/webhooks_replay.lua; one connection per thread, so each answer maps to its event).
It prints events/s, ack p50/p99, the ratio to the best peer and to the ceiling, and afterwards
checks that every acknowledged event is stored exactly once (with one received point each) and
that a redelivery race (the same event sent N times at once) stores it once.

`--generator python` drives the same targets from Python (httpx, one thread per connection)
instead: the old way, labelled as such; on this 2-core machine it measures itself more than
the receiver. `--quick` is the smoke run the test suite uses (SQLite, short, few connections).

Usage: python benchmarks/webhooks.py [--quick] [--generator wrk|python] [--duration S]
       [--connections C] [--workers W] [--no-postgres] [--json FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._common import stop_process  # noqa: E402
from benchmarks.profile_summary import profiled  # noqa: E402
from benchmarks.scratch_postgres import scratch_postgres  # noqa: E402
from benchmarks.webhook_peers import commit_latency_seconds  # noqa: E402

SECRET = "whsec_" + secrets.token_hex(16)  # a fresh signing secret per run, never a committed one
LUA = Path(__file__).with_name("webhooks_replay.lua")
PATH = "/billing/webhook"
# Goals (issue 23): >= 3x the best peer, ack p99 < 50 ms at 16 connections, >= 15 % of the ceiling.
GOAL_PEER_RATIO = 3.0
GOAL_P99_MS = 50.0
GOAL_CEILING_SHARE = 0.15
# Events pre-signed per target: enough for this rate over the run, so no thread runs dry.
MAX_RATE_PER_SECOND = 12_000


@dataclass
class Result:
    label: str
    database: str
    events_per_second: float
    p50_ms: float
    p99_ms: float
    answered: int
    acknowledged: int
    errors: dict[str, int]
    exhausted_threads: int
    checks: dict[str, Any] = field(default_factory=dict)


# --- events --------------------------------------------------------------------------------
def signed_line(event_id: str) -> str:
    body = json.dumps({"id": event_id, "object": "event", "type": "invoice.paid", "created": int(time.time()),
                       "livemode": False, "api_version": "2026-10-28.endive", "pending_webhooks": 1,
                       "data": {"object": {"id": f"in_{event_id[4:]}", "object": "invoice", "amount_paid": 2000,
                                           "currency": "usd", "customer": "cus_bench"}}},
                      separators=(",", ":"))
    ts = int(time.time())
    signature = hmac.new(SECRET.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={signature}\t{body}"


def write_events(directory: Path, connections: int, per_thread: int, run: str) -> list[list[str]]:
    """One file per wrk thread; returns the event ids in the order each thread sends them."""
    directory.mkdir(parents=True, exist_ok=True)
    ids: list[list[str]] = []
    for thread in range(connections):
        own = [f"evt_b{run}t{thread}n{n}" for n in range(per_thread)]
        (directory / f"t{thread}.txt").write_text("\n".join(signed_line(i) for i in own) + "\n")
        ids.append(own)
    return ids


# --- servers -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """(event loops, writers) CPU so far over a process and its descendants: in a receiver process
    the main thread runs the event loop; its other threads, and its writer process (which names
    itself `webhook-writer`, webhooks/writer_process.py), are the writers."""
    ticks = os.sysconf("SC_CLK_TCK")
    loops = writers = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            writer_process = Path(f"/proc/{current}/comm").read_text().strip() == "webhook-writer"
            for task in Path(f"/proc/{current}/task").iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / ticks
                if int(task.name) == current and not writer_process:
                    loops += seconds
                else:
                    writers += seconds
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return loops, writers


def postgres_commits(database_url: str) -> int:
    """Transactions committed in this database so far (pg_stat_database; each of ours is one batch)."""
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def postgres_backend_cpu_seconds(database_url: str) -> float:
    """CPU used so far by the PostgreSQL backends connected to this database (same machine, /proc):
    read while the server under test still holds its connections, so it is their whole lifetime."""
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
    return sum(tree_cpu_seconds(backend) for backend in pids)


@contextmanager
def serve(kind: str, workers: int, database_url: str | None) -> Iterator[tuple[int, int]]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--log-level", "warning", "--http", "httptools", "--loop", "uvloop", "--no-access-log"]
    if kind == "ceiling":
        command = [*uvicorn, "benchmarks.webhook_peers:ceiling"]
    elif kind == "peer":
        env.update(PEER_DATABASE_URL=str(database_url), PEER_WEBHOOK_SECRET=SECRET)
        command = [*uvicorn, "--factory", "benchmarks.webhook_peers:create_peer"]
    else:
        env.update(DATABASE_URL=str(database_url), STRIPE_API_KEY="sk_test_bench", STRIPE_WEBHOOK_SECRETS=SECRET,
                   WEBHOOK_PROCESS_INLINE="false")
        command = [sys.executable, "-m", "cli", "serve-webhooks", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        _wait_ready(port, kind, server)
        yield port, server.pid
    finally:
        stop_process(server, timeout=20)


def _wait_ready(port: int, kind: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {server.returncode}")
        try:
            if kind == "ceiling":
                httpx.post(f"http://127.0.0.1:{port}/", content=b"", timeout=1)
            else:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            time.sleep(0.3 if kind == "ceiling" else 0.5)  # let every worker process come up
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{kind} server did not start")


# --- generators ----------------------------------------------------------------------------
def drive_wrk(port: int, directory: Path, connections: int, duration: float, *, cycle: bool) -> dict[str, Any]:
    result_file = directory / "result.json"
    env = {**os.environ, "WRK_RESULT": str(result_file)}
    subprocess.run(["wrk", "-t", str(connections), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
                    "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}{PATH}", "--",
                    str(directory), "1" if cycle else "0"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    summary: dict[str, Any] = json.loads(result_file.read_text())
    return summary


def drive_python(port: int, directory: Path, connections: int, duration: float, *, cycle: bool) -> dict[str, Any]:
    """The same replay from Python threads (httpx), one connection each, for comparison."""
    latencies: list[float] = []
    threads: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client(thread: int) -> None:
        lines = (directory / f"t{thread}.txt").read_text().splitlines()
        own: list[float] = []
        sent = answered = 0
        failed: list[str] = []
        exhausted = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while time.monotonic() < stop_at:
                if sent >= len(lines):
                    exhausted = 1
                    if not cycle:
                        break
                signature, body = lines[sent % len(lines)].split("\t", 1)
                sent += 1
                began = time.perf_counter()
                response = http.post(PATH, content=body.encode(), headers={"Stripe-Signature": signature,
                                                                            "Content-Type": "application/json"})
                own.append(time.perf_counter() - began)
                if response.status_code != 200:
                    failed.append(f"{answered}:{response.status_code}")
                answered += 1
        with lock:
            latencies.extend(own)
            threads.append({"id": thread, "sent": sent, "answered": answered, "exhausted": exhausted,
                            "last": answered - 1, "failed": ",".join(failed), "skipped": ""})

    began = time.perf_counter()
    pool = [threading.Thread(target=client, args=(t,)) for t in range(connections)]
    for worker in pool:
        worker.start()
    for worker in pool:
        worker.join()
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies) or [0.0]
    statuses = sum(len([f for f in t["failed"].split(",") if f]) for t in threads)
    return {"requests": len(latencies), "duration_us": int(elapsed * 1e6),
            "p50_us": int(ordered[len(ordered) // 2] * 1e6), "p99_us": int(ordered[int(len(ordered) * 0.99)] * 1e6),
            "max_us": int(ordered[-1] * 1e6),
            "errors": {"connect": 0, "read": 0, "write": 0, "status": statuses, "timeout": 0},
            "threads": sorted(threads, key=lambda t: t["id"])}


# --- checks --------------------------------------------------------------------------------
def _answered_ids(summary: dict[str, Any], ids: list[list[str]]) -> tuple[set[str], set[str], set[str]]:
    """(acknowledged with 200, answered otherwise, sent) event ids."""
    acked: set[str] = set()
    refused: set[str] = set()
    sent: set[str] = set()
    for thread in summary["threads"]:
        own = ids[thread["id"]]
        failed = {int(item.split(":")[0]) for item in thread["failed"].split(",") if item}
        skipped = {int(item) for item in thread["skipped"].split(",") if item}
        for n in range(min(thread["last"] + 1, len(own))):
            if n not in skipped:
                (refused if n in failed else acked).add(own[n])
        sent.update(own[:min(thread["sent"], len(own))])
    return acked, refused, sent


def check_ours(database_url: str, acked: set[str], sent: set[str], prefix: str) -> dict[str, Any]:
    """The replayed events (ids starting with `prefix`; the race's event is checked apart)."""
    from sqlalchemy import func, select

    from db.models import MetricPoint, StripeEvent
    from db.session import UnitOfWork, dispose_engines
    from services.metric_points import WEBHOOK_RECEIVED

    with UnitOfWork(database_url) as uow:
        rows = uow.session.execute(select(StripeEvent.id, StripeEvent.duplicate_deliveries)
                                   .where(StripeEvent.id.startswith(prefix))).all()
        received = uow.session.execute(select(func.count()).where(
            MetricPoint.name == WEBHOOK_RECEIVED, MetricPoint.dedupe_key.startswith(prefix))).scalar_one()
    dispose_engines()
    stored = [r[0] for r in rows]
    return {"acknowledged_stored": len(acked & set(stored)) == len(acked), "no_copies": len(stored) == len(set(stored)),
            "nothing_unsent": set(stored) <= sent, "no_duplicate_deliveries": all(r[1] == 0 for r in rows),
            "one_received_point_each": received == len(stored), "stored": len(stored)}


def check_peer(database_url: str, acked: set[str], sent: set[str]) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from benchmarks.webhook_peers import PEER_TABLE

    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text(f"SELECT id FROM {PEER_TABLE}"))]  # noqa: S608 (a constant)
    engine.dispose()
    return {"acknowledged_stored": len(acked & set(stored)) == len(acked), "no_copies": len(stored) == len(set(stored)),
            "nothing_unsent": set(stored) <= sent, "stored": len(stored)}


def redelivery_race(port: int, database_url: str, copies: int = 32) -> dict[str, Any]:
    """The same signed event delivered `copies` times at once: stored once, the rest duplicates."""
    from sqlalchemy import select

    from db.models import StripeEvent
    from db.session import UnitOfWork, dispose_engines

    event_id = f"evt_race_{uuid.uuid4().hex[:12]}"
    signature, body = signed_line(event_id).split("\t", 1)
    barrier = threading.Barrier(copies)

    def deliver(_: int) -> str:
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            response = http.post(f"http://127.0.0.1:{port}{PATH}", content=body.encode(),
                                 headers={"Stripe-Signature": signature})
            return str(response.json().get("status")) if response.status_code == 200 else str(response.status_code)

    with concurrent.futures.ThreadPoolExecutor(copies) as pool:
        outcomes = list(pool.map(deliver, range(copies)))
    with UnitOfWork(database_url) as uow:
        row = uow.session.execute(select(StripeEvent.duplicate_deliveries).where(StripeEvent.id == event_id)).all()
    dispose_engines()
    once = (outcomes.count("stored") == 1 and outcomes.count("duplicate") == copies - 1
            and len(row) == 1 and row[0][0] == copies - 1)
    return {"race_stored_once": once, "race_outcomes": {o: outcomes.count(o) for o in set(outcomes)}}


# --- one target ----------------------------------------------------------------------------
def run_target(kind: str, label: str, database: str, database_url: str | None, args: argparse.Namespace,
               scratch: Path, workers: int) -> Result:
    if kind == "ours" and database_url:
        from db.migrate import upgrade
        from db.session import dispose_engines

        upgrade(database_url)
        dispose_engines()
    run = uuid.uuid4().hex[:6]
    directory = scratch / f"{kind}-{run}"
    connections = args.connections
    cycle = kind == "ceiling"
    per_thread = 2000 if cycle else int(MAX_RATE_PER_SECOND * args.duration / connections) + 50
    ids = write_events(directory, connections, per_thread, run)
    drive = drive_wrk if args.generator == "wrk" else drive_python
    with serve(kind, workers, database_url) as (port, pid):
        cpu_before = tree_cpu_seconds(pid)
        split_before = thread_cpu_seconds(pid)
        postgres = bool(database_url) and database != "SQLite"
        commits_before = postgres_commits(str(database_url)) if postgres else 0
        with profiled(pid, args.profile, f"{kind}-{database.lower()}-{workers}proc", args.duration,
                      enabled=kind == "ours"):
            summary = drive(port, directory, connections, args.duration, cycle=cycle)
        cpu = tree_cpu_seconds(pid) - cpu_before
        split_after = thread_cpu_seconds(pid)
        loop_cpu, other_cpu = (after - before for after, before in zip(split_after, split_before, strict=True))
        database_cpu = postgres_backend_cpu_seconds(database_url) if database_url and database != "SQLite" else None
        acked, refused, sent = _answered_ids(summary, ids)
        checks: dict[str, Any] = {}
        if postgres:
            time.sleep(1.1)  # backends report their transaction counts at most once a second
            commits = postgres_commits(str(database_url)) - commits_before
            checks["events_per_commit"] = round(len(acked) / commits, 1) if commits else None
        if kind == "ours" and database_url:
            checks.update(redelivery_race(port, database_url, copies=8 if args.quick else 32))
    if kind == "ours" and database_url:
        checks.update(check_ours(database_url, acked, sent, f"evt_b{run}t"))
    elif kind == "peer" and database_url:
        checks.update(check_peer(database_url, acked, sent))
    seconds = summary["duration_us"] / 1e6
    count = summary["requests"] if cycle else len(acked)
    checks["server_cpu_us_per_event"] = round(cpu / count * 1e6) if count else None
    if count and kind == "ours":
        checks["loop_thread_cpu_us_per_event"] = round(loop_cpu / count * 1e6)
        checks["writer_cpu_us_per_event"] = round(other_cpu / count * 1e6)
    if database_cpu is not None and count:
        checks["postgres_cpu_us_per_event"] = round(database_cpu / count * 1e6)
    shutil.rmtree(directory, ignore_errors=True)
    return Result(label=label, database=database, events_per_second=count / seconds if seconds else 0.0,
                  p50_ms=summary["p50_us"] / 1000, p99_ms=summary["p99_us"] / 1000, answered=summary["requests"],
                  acknowledged=len(acked), errors={k: v for k, v in summary["errors"].items() if v},
                  exhausted_threads=sum(t["exhausted"] for t in summary["threads"]), checks=checks)


def run_database(database: str, url_for: Any, args: argparse.Namespace, scratch: Path) -> list[Result]:
    results = [run_target("ceiling", f"do-nothing ASGI ({args.workers} proc)", database, None, args, scratch,
                          args.workers)]
    with url_for("probe") as url:
        latency = commit_latency_seconds(url)
    results.append(Result(label=f"bound: {args.connections} conn / 1-row commit", database=database,
                          events_per_second=args.connections / latency, p50_ms=latency * 1000, p99_ms=0.0,
                          answered=0, acknowledged=0, errors={}, exhausted_threads=0,
                          checks={"commit_ms": round(latency * 1000, 2)}))
    for workers in args.ours_workers:
        with url_for("ours") as url:
            results.append(run_target("ours", f"ours serve-webhooks ({workers} proc)", database, url, args, scratch,
                                      workers))
    peer_workers = [] if args.no_peer else [1] if args.quick else sorted({1, args.workers})
    for workers in peer_workers:
        with url_for("peer") as url:
            results.append(run_target("peer", f"peer construct_event+INSERT ({workers} proc)", database, url, args,
                                      scratch, workers))
    return results


def report(results: list[Result], args: argparse.Namespace) -> None:
    how = ("wrk, Lua replay" if args.generator == "wrk"
           else "Python httpx threads: measures itself more than the receiver")
    print(f"\nWebhook receiver, generator {args.generator} ({how}), "
          f"{args.connections} connections, {args.duration:g} s per target, pre-signed unique events")
    for database in dict.fromkeys(r.database for r in results):
        rows = [r for r in results if r.database == database]
        ceiling = next(r for r in rows if r.label.startswith("do-nothing"))
        peers = [r for r in rows if r.label.startswith("peer")]
        best_peer = max(peers, key=lambda r: r.events_per_second) if peers else None
        print(f"\n{database}")
        print(f"  {'target':42} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'x peer':>7} {'% ceiling':>9} "
              f"{'server CPU/event':>16}")
        for r in rows:
            if r.label.startswith("bound"):
                continue  # printed on its own line below
            best = best_peer.events_per_second if best_peer else 0
            x_peer = r.events_per_second / best if best else 0
            share = r.events_per_second / ceiling.events_per_second if ceiling.events_per_second else 0
            print(f"  {r.label:42} {r.events_per_second:9,.0f} {r.p50_ms:7.1f} {r.p99_ms:7.1f} {x_peer:7.2f} "
                  f"{share * 100:8.1f}% {r.checks.get('server_cpu_us_per_event') or 0:>13,} us"
                  + (f"  errors {r.errors}" if r.errors else "")
                  + (f"  ({r.exhausted_threads} threads ran out of events)" if r.exhausted_threads and r is not ceiling
                     else ""))
        ours_runs = [r for r in rows if r.label.startswith("ours")]
        ours = max(ours_runs, key=lambda r: r.events_per_second) if ours_runs else None
        if ours and best_peer:
            x_peer = ours.events_per_second / best_peer.events_per_second
            share = ours.events_per_second / ceiling.events_per_second
            print(f"  goals ({ours.label}): >= {GOAL_PEER_RATIO:g}x best peer: {x_peer:.2f}x; "
                  f"p99 < {GOAL_P99_MS:g} ms: "
                  f"{ours.p99_ms:.1f} ms; >= {GOAL_CEILING_SHARE:.0%} of ceiling (PostgreSQL): {share:.1%}")
        bound = next((r for r in rows if r.label.startswith("bound")), None)
        if ours and bound:
            print(f"  durable-commit bound: {bound.events_per_second:,.0f}/s ({bound.p50_ms:.2f} ms a commit); "
                  f"ours at {ours.events_per_second / bound.events_per_second:.0%} of it")
        for r in rows:
            if r.checks:
                print(f"  checks {r.label}: " + ", ".join(f"{k}={v}" for k, v in r.checks.items()))


def exactly_once(results: list[Result]) -> bool:
    keys = ("acknowledged_stored", "no_copies", "nothing_unsent", "no_duplicate_deliveries", "one_received_point_each",
            "race_stored_once")
    return all(r.checks.get(k, True) is True for r in results for k in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="receiver processes for ours, the ceiling and a peer")
    parser.add_argument("--quick", action="store_true", help="smoke run: SQLite only, 1 s, 4 connections, 1 process")
    parser.add_argument("--ours-workers", type=lambda v: [int(w) for w in v.split(",")], default=None,
                        help="receiver processes for ours, one run each (e.g. 1,2,4; default: 1 and --workers)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer (a quicker look at ours)")
    parser.add_argument("--json", type=Path, help="also write the figures and checks as JSON")
    parser.add_argument("--profile", type=Path, help="py-spy records ours under load: collapsed stacks in this folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.connections, args.workers, args.no_postgres = 1.0, 4, 1, True
    # Ours with its default of one process (serve-webhooks --workers 1) and with the peers' count.
    args.ours_workers = args.ours_workers or sorted({1, args.workers})
    if args.generator == "wrk" and shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (or --generator python)")
        return 2
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)

        @contextmanager
        def sqlite_url(kind: str) -> Iterator[str]:
            yield f"sqlite:///{scratch}/{kind}-{uuid.uuid4().hex[:6]}.db"

        if not args.no_sqlite:
            results += run_database("SQLite", sqlite_url, args, scratch)
        if not args.no_postgres:
            @contextmanager
            def postgres_url(kind: str) -> Iterator[str | None]:
                with scratch_postgres(f"bo_bench_{kind}") as url:
                    yield url

            with scratch_postgres("bo_bench_probe") as probe:
                reachable = probe is not None
            if reachable:
                results += run_database("PostgreSQL", postgres_url, args, scratch)
    report(results, args)
    ok = exactly_once(results)
    print(f"\nexactly once: {'yes' if ok else 'NO'} (every acknowledged event stored once, nothing unsent stored, "
          "one received point each, the redelivery race stored once)")
    if args.json:
        args.json.write_text(json.dumps({"generator": args.generator, "connections": args.connections,
                                         "duration": args.duration, "exactly_once": ok,
                                         "results": [asdict(r) for r in results]}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
