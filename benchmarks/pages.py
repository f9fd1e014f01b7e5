"""Queue page render times at 100k rows (issue 23): the disputes queue over 100k disputes and the
early-fraud-warning queue over 100k warnings (on 100k charges, some disputed), on SQLite and
PostgreSQL, beside the goals: cold <= 300 ms, warm <= 150 ms.

Cold = a new session with the pages' caches emptied, in a console already started (the
component scan and the imports of the first render after a start are paid once, unmeasured);
warm = a rerun of the same session (a click, a filter typed). CPU = this process's CPU time
(the page, SQLite, the in-process emulator; not the PostgreSQL server). Live Stripe reads go to the
in-process emulator with `--stripe-latency-ms` added to every request, standing in for Stripe's
own round trip, so a page that re-reads Stripe on every rerun shows it.

Usage: python benchmarks/pages.py [--rows 100000] [--databases sqlite,postgresql] [--runs 3]
                                  [--stripe-latency-ms 100]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from db.migrate import upgrade  # noqa: E402
from db.models import Charge, Dispute, FraudWarning  # noqa: E402
from db.session import dispose_engines, get_engine  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402
from services.auth import Identity  # noqa: E402
from services.config import load_settings  # noqa: E402
from services.runtime import Runtime, set_runtime  # noqa: E402

GOAL_COLD_MS, GOAL_WARM_MS = 300, 150
ADMIN = "admin@example.com"
STATUSES = ["needs_response", "warning_needs_response", "under_review", "won", "lost"]
REASONS = ["fraudulent", "subscription_canceled", "product_not_received", "duplicate", "general"]
EFW_STATUSES = ["open", "open", "refunded", "ignored"]
FRAUD_TYPES = ["card_never_received", "fraudulent_card_application", "made_with_stolen_card", "misc"]
BATCH = 20_000
PAGES = {"disputes queue": "disputes.py", "EFW queue": "fraud_warnings.py"}


def load(url: str, count: int) -> None:
    """`count` disputes, and `count` early fraud warnings on their own charges (every 20th charge
    disputed too, every 5th partly and every 11th fully refunded)."""
    upgrade(url)
    rng = random.Random(3)
    now = datetime.now(UTC)
    with get_engine(url).begin() as conn:
        for offset in range(0, count, BATCH):
            size = min(BATCH, count - offset)
            conn.execute(insert(Dispute), [{
                "id": f"dp_bench_{offset + i}", "charge_id": f"ch_{offset + i}", "amount": rng.randint(500, 50_000),
                "currency": "usd", "reason": rng.choice(REASONS), "status": rng.choice(STATUSES),
                "customer_email": f"c{offset + i}@example.io", "due_by": now + timedelta(hours=rng.randint(-72, 240)),
                "created": now - timedelta(days=rng.randint(0, 60)), "raw": {},
            } for i in range(size)])
            charges, warnings, disputed = [], [], []
            for n in range(offset, offset + size):
                amount = rng.randint(500, 50_000)
                refunded = amount if n % 11 == 0 else amount // 2 if n % 5 == 0 else 0
                created = now - timedelta(minutes=rng.randint(0, 90 * 24 * 60))
                charges.append({"id": f"ch_efw_{n}", "amount": amount, "amount_refunded": refunded,
                                "currency": "usd", "status": "succeeded", "paid": True, "card_brand": "visa",
                                "card_fingerprint": f"fp_{n % 5000}", "created": created, "raw": {}})
                warnings.append({"id": f"issfr_bench_{n}", "charge_id": f"ch_efw_{n}", "amount": amount,
                                 "currency": "usd", "fraud_type": FRAUD_TYPES[n % 4], "actionable": n % 7 != 0,
                                 "created": created + timedelta(days=2), "status": EFW_STATUSES[n % 4],
                                 "customer_email": f"e{n}@example.io", "raw": {}})
                if n % 20 == 0:
                    disputed.append({"id": f"dp_efw_{n}", "charge_id": f"ch_efw_{n}", "amount": amount,
                                     "currency": "usd", "reason": "fraudulent", "status": "needs_response",
                                     "due_by": now + timedelta(days=5), "created": created + timedelta(days=9),
                                     "raw": {}})
            conn.execute(insert(Charge), charges)
            conn.execute(insert(FraudWarning), warnings)
            conn.execute(insert(Dispute), disputed)


class Sessions:
    """New AppTest sessions on one page as a running console serves them: Streamlit scans the
    installed packages for components once per server (AppTest does it on each new AppTest's first
    run, 150-300 ms here), and the modules are imported by the first render after a start; both are
    paid once by `start`, unmeasured, and each measured cold render is a new session after that."""

    def __init__(self, page: str) -> None:
        self.path = str(ROOT / "app_pages" / page)
        self.components: Any = None

    def new(self) -> AppTest:
        at = AppTest.from_file(self.path, default_timeout=120)
        if self.components is not None:
            at._bidi_component_manager = self.components
        at.session_state["identity"] = Identity(ADMIN, signed_in_at=time.time(), last_seen_at=time.time())
        return at

    def start(self) -> None:
        at = self.new()
        at.run()
        self.components = at._bidi_component_manager


def timed(at: AppTest) -> tuple[float, float]:
    """(wall ms, CPU ms of this process: the page, SQLite, the emulator; not the PostgreSQL server)."""
    wall, cpu = time.perf_counter(), time.process_time()
    at.run()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def measure(page: str, runs: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    sessions = Sessions(page)
    sessions.start()
    cold, warm = [], []
    for _ in range(runs):
        st.cache_data.clear()  # cold means cold: nothing left from the previous session
        at = sessions.new()
        cold.append(timed(at))
        if at.exception:
            raise SystemExit(f"{page} failed: {at.exception[0].message}")
        for _ in range(3):
            warm.append(timed(at))
    return cold, warm


def settle(kind: str, url: str) -> None:
    """PostgreSQL as autovacuum leaves a table soon after a bulk load: vacuumed (index-only scans
    need the visibility map) and analyzed. SQLite is left as an application leaves it (no ANALYZE)."""
    if kind != "postgresql":
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


@contextmanager
def database(kind: str, scratch: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{scratch}/pages.db"
        return
    import psycopg

    name = f"bench_pages_{os.getpid()}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        dispose_engines()
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stripe-latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    server = EmulatorServer(host="127.0.0.1", port=0, rate_limit_per_second=100_000)
    server.start()
    server.faults.latency_ms = args.stripe_latency_ms
    results: list[str] = []
    try:
        for kind in args.databases.split(","):
            with tempfile.TemporaryDirectory() as scratch, database(kind, scratch) as url:
                started = time.perf_counter()
                load(url, args.rows)
                settle(kind, url)
                print(f"{kind}: loaded {args.rows:,} disputes and {args.rows:,} warnings in "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
                set_runtime(Runtime(load_settings({
                    "DATABASE_URL": url, "ADMIN_EMAILS": ADMIN, "STRIPE_API_KEY": "sk_test_bench",
                    "STRIPE_API_BASE": server.base_url, "STRIPE_MAX_RETRIES": "0",
                    "STRIPE_RATE_LIMIT_PER_SECOND": "100000"}, env_file=None)))
                for label, page in PAGES.items():
                    cold, warm = measure(page, args.runs)
                    wall_cold, wall_warm = [w for w, _ in cold], [w for w, _ in warm]
                    cpu_cold, cpu_warm = statistics.median(c for _, c in cold), statistics.median(c for _, c in warm)
                    line = (f"{kind:10s} {label:15s} cold median {statistics.median(wall_cold):5.0f} ms "
                            f"(CPU {cpu_cold:4.0f}; goal <= {GOAL_COLD_MS}) · warm median "
                            f"{statistics.median(wall_warm):5.0f} ms (CPU {cpu_warm:4.0f}), "
                            f"max {max(wall_warm):5.0f} ms (goal <= {GOAL_WARM_MS})")
                    print(line, flush=True)
                    results.append(line)
    finally:
        server.stop()
    print(f"\nload average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{args.rows:,} rows, Stripe latency {args.stripe_latency_ms:g} ms, {args.runs} cold and "
          f"{args.runs * 3} warm renders each:")
    print("\n".join(results))


if __name__ == "__main__":
    main()
