"""Global search at scale: 100k customers (and as many charges, 5k disputes) on SQLite and
PostgreSQL; p50/p95 per kind of query against the goal (p95 < 100 ms, issue 19).

The peer is the query a team would write first: one `ILIKE '%q%'` over every text column
of customers, run for the same queries.
Usage: python benchmarks/search.py [customers, default 100000] [repeats per query, default 30]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, or_, select  # noqa: E402

from benchmarks._common import timed  # noqa: E402
from benchmarks.scratch_postgres import scratch_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Charge, Customer, Dispute  # noqa: E402
from db.session import UnitOfWork, dispose_engines, get_engine  # noqa: E402
from services import search  # noqa: E402

GOAL_P95_MS = 100.0
FIRST = ["ada", "bob", "chen", "dara", "emil", "fatima", "gus", "hana", "ivan", "june"]
LAST = ["lovelace", "builder", "wu", "okafor", "jensen", "haddad", "moreau", "sato", "petrov", "park"]


def load(url: str, customers: int) -> None:
    upgrade(url)
    rng = random.Random(7)
    now = datetime.now(UTC)
    with get_engine(url).begin() as conn:
        for offset in range(0, customers, 20_000):
            batch = range(offset, min(offset + 20_000, customers))
            conn.execute(insert(Customer), [{
                "id": f"cus_{i:08d}", "email": f"{rng.choice(FIRST)}.{i}@example{i % 97}.com",
                "name": f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()} {i}", "raw": {},
                "stripe_updated": 0, "updated_at": now} for i in batch])
            conn.execute(insert(Charge), [{
                "id": f"ch_{i:08d}", "stripe_customer_id": f"cus_{i:08d}", "amount": rng.choice([900, 2900, 9900]),
                "amount_refunded": 0, "currency": "usd", "status": "succeeded", "paid": True, "refunded": False,
                "disputed": False, "card_brand": "visa", "card_last4": f"{rng.randrange(10_000):04d}",
                "created": now - timedelta(minutes=i), "stripe_updated": 0, "raw": {}} for i in batch])
        conn.execute(insert(Dispute), [{
            "id": f"dp_{i:08d}", "charge_id": f"ch_{i:08d}", "stripe_customer_id": f"cus_{i:08d}",
            "customer_email": f"disputed.{i}@example.com", "amount": 2900, "currency": "usd",
            "reason": "fraudulent", "status": "needs_response", "raw": {}} for i in range(0, customers, 20)])


QUERIES = {"id": "cus_00054321", "email prefix": "june.7", "full email": "",  # read from the loaded data
           "last4": "4242", "amount": "29.00",
           "name part": "lovelace 999"}


def peer(uow: UnitOfWork, query: str) -> int:
    pattern = f"%{query}%"
    with uow:
        return len(list(uow.session.execute(select(Customer.id).where(or_(
            Customer.id.ilike(pattern), Customer.email.ilike(pattern), Customer.name.ilike(pattern)))
            .limit(search.DEFAULT_LIMIT)).scalars()))


def _search(url: str, query: str) -> object:
    return search.search(UnitOfWork(url), query)


def _peer_search(url: str, query: str) -> object:
    return peer(UnitOfWork(url), query)


def run(label: str, url: str, customers: int, repeats: int) -> None:
    started = time.perf_counter()
    load(url, customers)
    print(f"\n{label}: loaded {customers:,} customers + {customers:,} charges + {customers // 20:,} disputes "
          f"in {time.perf_counter() - started:.1f} s")
    loaded = UnitOfWork(url)
    with loaded:
        assert loaded.session.execute(select(func.count()).select_from(Customer)).scalar_one() == customers
        QUERIES["full email"] = str(loaded.session.execute(select(Customer.email).where(
            Customer.id == "cus_00012345")).scalar_one())
    print(f"{'query':<14} {'hits':>5} {'p50 ms':>8} {'p95 ms':>8} {'goal':>8}   {'peer p95 ms':>11}")
    for kind, query in QUERIES.items():
        hits = len(search.search(UnitOfWork(url), query))
        p50, p95 = timed(partial(_search, url, query), repeats)
        _, peer_p95 = timed(partial(_peer_search, url, query), max(5, repeats // 3))
        verdict = "ok" if p95 < GOAL_P95_MS else "MISS"
        print(f"{kind:<14} {hits:>5} {p50:>8.1f} {p95:>8.1f} {'<' + str(int(GOAL_P95_MS)):>8} {verdict:<4}"
              f"{peer_p95:>9.1f}")
    dispose_engines()


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    with tempfile.TemporaryDirectory() as scratch:
        run("SQLite", f"sqlite:///{scratch}/search.db", customers, repeats)
    with scratch_postgres("bench_search") as url:
        if url:
            run("PostgreSQL", url, customers, repeats)


if __name__ == "__main__":
    main()
