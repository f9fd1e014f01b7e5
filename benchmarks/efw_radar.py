"""EFW Radar panel reads at scale: the Radar context and the related payments (same card fingerprint,
email or IP) of one warning, over many customers and charges, on SQLite or PostgreSQL.

Prints figures only (no asserts): p50 / p95 in ms for `radar_context` and `related_payments`,
beside the goal (the panel renders in well under a second: p95 < 100 ms for each read) and the
ceiling (`SELECT 1` through the same unit of work). Every match is an index lookup (card
fingerprint, email, `metadata_ip`).

    python benchmarks/efw_radar.py [--customers 100000] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text  # noqa: E402

from benchmarks._common import timed  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Charge, Customer, FraudWarning  # noqa: E402
from db.session import UnitOfWork, get_engine  # noqa: E402
from services import efw_radar  # noqa: E402

GOAL_P95_MS = 100.0
TARGET = "issfr_bench"


def seed(url: str, customers: int) -> None:
    upgrade(url)
    rng = random.Random(19)
    now = datetime.now(UTC)
    fingerprints = [f"fp{n:014d}" for n in range(max(1, customers // 5))]
    with get_engine(url).begin() as conn:
        for start in range(0, customers, 5000):
            people, charges = [], []
            for n in range(start, min(customers, start + 5000)):
                ip = f"198.51.{n % 250}.{n % 200}" if n % 10 == 0 else None
                people.append({"id": f"cus_{n:08d}", "email": f"person{n}@example.io", "created": now,
                               "metadata_ip": ip,
                               "raw": {"metadata": {"ip": ip}} if ip else {}, "stripe_updated": 0,
                               "updated_at": now})
                for k in range(2):
                    outcome = {"type": "authorized", "risk_level": "normal", "risk_score": rng.randint(0, 60)}
                    charges.append({
                        "id": f"ch_{n:08d}_{k}", "stripe_customer_id": f"cus_{n:08d}", "amount": 2900,
                        "amount_refunded": 0, "currency": "usd", "status": "succeeded", "paid": True,
                        "refunded": False, "disputed": False, "card_fingerprint": rng.choice(fingerprints),
                        "card_last4": "4242", "risk_level": "normal", "risk_score": outcome["risk_score"],
                        "created": now - timedelta(days=rng.randint(0, 360)), "stripe_updated": 0,
                        "raw": {"outcome": outcome, "metadata": {}},
                    })
            conn.execute(insert(Customer), people)
            conn.execute(insert(Charge), charges)
        conn.execute(insert(FraudWarning), [{
            "id": TARGET, "charge_id": "ch_00000010_0", "stripe_customer_id": "cus_00000010", "amount": 2900,
            "currency": "usd", "actionable": True, "created": now, "status": "open", "stripe_updated": 0,
            "raw": {}, "updated_at": now, "customer_email": "person10@example.io",
        }])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/efw_radar.db"
    started = time.perf_counter()
    seed(url, args.customers)
    print(f"seeded {args.customers} customers, {2 * args.customers} charges in {time.perf_counter() - started:.1f} s"
          f" ({url.split(':', 1)[0]})")
    uow = UnitOfWork(url)

    def ceiling() -> None:
        with uow:
            uow.session.execute(text("select 1"))

    related = efw_radar.related_payments(uow, TARGET)
    by_kind = {kind: sum(kind in r.matched_on for r in related) for kind in ("card", "email", "ip")}
    print(f"related payments found: {len(related)} ({', '.join(f'{k} {n}' for k, n in by_kind.items())})")
    for label, run in (("ceiling: select 1", ceiling), ("radar_context", lambda: efw_radar.radar_context(uow, TARGET)),
                       ("related_payments", lambda: efw_radar.related_payments(uow, TARGET))):
        p50, p95 = timed(run, args.repeat)
        print(f"{label:<20} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  (goal p95 < {GOAL_P95_MS:.0f} ms)")


if __name__ == "__main__":
    main()
