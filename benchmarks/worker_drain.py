"""The worker draining a backlog: stored events of realistic types (the emulator's seeded month:
subscriptions, invoices, charges, disputes, EFWs, refunds) processed by `process_pending`, the
worker's poll, against the emulator with its test-mode rate limit on (25 req/s; the gateway
keeps to 80 %, 20 req/s), on SQLite and PostgreSQL.

Prints events/s beside the goal (issue 23: 500) and the Stripe reads it needed: at 20 req/s a
drain that re-read one object per event could not pass 20 events/s, which is where the code
before batching stood. `--tree DIR` runs another checkout's code (e.g. an export of an older
commit) for a before/after figure.

    python3 benchmarks/worker_drain.py [--customers 3600] [--events 20000] [--no-postgres] [--profile PREFIX]

`--profile PREFIX` writes a cProfile of each drain (the main thread) to PREFIX.sqlite.prof and
PREFIX.postgres.prof (`python3 -m pstats`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_tree = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--tree"), None)
sys.path.insert(0, str(ROOT))
if _tree:
    sys.path.insert(0, str(Path(_tree).resolve()))

from benchmarks._common import throughput_line  # noqa: E402
from benchmarks.backfill import cpu_seconds, peak_rate, start_emulator  # noqa: E402
from benchmarks.scratch_postgres import scratch_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from services.config import CONSOLE_EVENT_TYPES, RATE_LIMIT_SHARE, STRIPE_RATE_LIMITS, load_settings  # noqa: E402
from services.emulator_client import emulator_call  # noqa: E402
from services.runtime import Runtime  # noqa: E402
from services.webhooks import process_pending, store_events  # noqa: E402

API_KEY = "sk_test_benchmark0123456789"
GOAL = 500
BUDGET = STRIPE_RATE_LIMITS["test"] * RATE_LIMIT_SHARE


def seeded_state(customers: int, path: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The emulator's seeded month built here, in this process, and saved for the emulator process
    to load: reading 40k events back through the list endpoint would cost minutes of emulator
    time. Returns every event (as the API shows it, oldest first) and the seeded prices."""
    import orjson

    from emulator.seed import seed_month
    from emulator.server import EmulatorServer
    from emulator.wire.routes import public

    server = EmulatorServer(port=0)
    seeded = seed_month(server.engine, customers=customers, seed=5)
    server.save_state(path)
    server.httpd.server_close()
    events = [orjson.loads(orjson.dumps(public(e))) for e in server.engine.events]
    return sorted(events, key=lambda e: (e["created"], e["id"])), seeded


def drain(base: str, database_url: str, backlog: list[dict[str, Any]], emulator_pid: int,
          mapping: str, cold: bool, profile: str | None = None) -> dict[str, Any]:
    settings = load_settings({"DATABASE_URL": database_url, "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": base,
                              "STRIPE_MODE": "test", "STRIPE_MAX_RETRIES": "5",
                              "STRIPE_PLAN_PRICE_MAPPING_TEST": mapping}, env_file=None)
    upgrade(database_url)
    runtime = Runtime(settings)
    for start in range(0, len(backlog), 500):
        store_events(runtime, backlog[start:start + 500], source="webhook")
    gateway = runtime.gateway
    if not cold:
        # A backlog after a pause or an outage: the billing DB already knows the customers (the
        # sync's list pass, 100 a request); --cold starts from an empty DB, every customer unknown.
        from services import stripe_mapping
        from services.sync import _upsert_all

        def upsert(uow: Any, obj: dict[str, Any], at: int) -> None:
            stripe_mapping.upsert_customer(uow, obj, observed_at=at)

        _upsert_all(runtime, "customers", gateway.list_customers(), upsert, lambda _l: None, [])
    emulator_call(base, "requests", method="DELETE")
    gateway._record_times = True
    requests_before = gateway.stats.requests
    cpu, emulator_cpu = cpu_seconds(), cpu_seconds(emulator_pid)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.monotonic()
    processed = 0
    while True:  # the worker's loop without its idle sleep
        done = process_pending(runtime, limit=1000)
        processed += done
        if not done:
            break
    seconds = time.monotonic() - started
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu, emulator_cpu = cpu_seconds() - cpu, cpu_seconds(emulator_pid) - emulator_cpu
    from sqlalchemy import func, select

    from db.models import StripeEvent

    with runtime.uow() as uow:
        statuses = dict(uow.session.execute(
            select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all())
    reads: dict[str, int] = {}
    for request in emulator_call(base, "requests", method="GET")["data"]:
        kind = "/".join(request["path"].split("/")[:3])
        reads[kind] = reads.get(kind, 0) + 1
    return {"reads": reads, "processed": processed, "seconds": seconds,
            "requests": gateway.stats.requests - requests_before,
            "peak": peak_rate(gateway.stats.request_times), "statuses": statuses,
            "cpu_us_per_event": 1e6 * cpu / max(1, processed), "emulator_cpu_s": emulator_cpu}


def line(label: str, result: dict[str, Any]) -> str:
    return throughput_line(label, 12, result["processed"], result["seconds"], GOAL,
                           f"{result['requests']:,} Stripe reads (peak {result['peak']}/s)",
                           f"our CPU {result['cpu_us_per_event']:,.0f} µs/event",
                           f"end state {result['statuses']}\n{'':<12} reads by endpoint: {result['reads']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=3600, help="seeded customers (~5.6 subscribed events each)")
    parser.add_argument("--events", type=int, default=20_000, help="backlog size: the oldest N subscribed events")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--cold", action="store_true", help="start from an empty billing DB (no customers known)")
    parser.add_argument("--tree", default=None, help="run this checkout's services/ and db/ instead")
    parser.add_argument("--profile", default=None, metavar="PREFIX",
                        help="cProfile the drain (the main thread) into PREFIX.sqlite.prof / PREFIX.postgres.prof")
    args = parser.parse_args()
    import json

    state_dir = tempfile.mkdtemp()
    state_file = f"{state_dir}/emulator.json"
    events, seeded = seeded_state(args.customers, state_file)
    allowed = set(CONSOLE_EVENT_TYPES)
    backlog = [e for e in events if e["type"] in allowed][: args.events]
    process, base = start_emulator(state_file)
    try:
        emulator_call(base, "rate_limit", {"per_second": STRIPE_RATE_LIMITS["test"]})
        kinds: dict[str, int] = {}
        for event in backlog:
            kinds[event["type"].rsplit(".", 1)[0]] = kinds.get(event["type"].rsplit(".", 1)[0], 0) + 1
        print(f"backlog: {len(backlog):,} stored events ({', '.join(f'{k} {n:,}' for k, n in sorted(kinds.items()))})"
              f"; code from {args.tree or 'this checkout'}; goal {GOAL} events/s; gateway budget {BUDGET:.0f} req/s;"
              f" load average {os.getloadavg()[0]:.1f}", flush=True)
        mapping = json.dumps(seeded["prices"])
        with tempfile.TemporaryDirectory() as tmp:
            result = drain(base, f"sqlite:///{tmp}/drain.db", backlog, process.pid, mapping, args.cold,
                           f"{args.profile}.sqlite.prof" if args.profile else None)
            print(line("SQLite", result), flush=True)
        if not args.no_postgres:
            with scratch_postgres("bench_drain") as url:
                if url:
                    time.sleep(1.5)
                    result = drain(base, url, backlog, process.pid, mapping, args.cold,
                                   f"{args.profile}.postgres.prof" if args.profile else None)
                    print(line("PostgreSQL", result), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
