"""Reconciliation dry-run over 10,000 subscriptions on the in-process emulator.

Prints wall time, Stripe list calls (target <= 110) and the peak request rate in
any one-second window (must stay under 80 % of the test-mode limit, 25 req/s).

    python benchmarks/reconcile.py [--subscriptions 10000] [--workers 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from db.migrate import upgrade  # noqa: E402
from db.session import UnitOfWork  # noqa: E402
from services.config import RATE_LIMIT_SHARE, STRIPE_RATE_LIMITS, load_settings  # noqa: E402
from services.emulator_client import emulator_call  # noqa: E402
from services.reconciliation import run_reconciliation  # noqa: E402
from services.stripe_gateway import StripeGateway  # noqa: E402
from services.stripe_mapping import upsert_subscription  # noqa: E402
from services.stripe_objects import subscription_period  # noqa: E402

API_KEY = "sk_test_benchmark0123456789"


def emulator_admin(base_url: str, path: str, payload: dict[str, Any]) -> Any:
    return emulator_call(base_url, path, payload, timeout=600)


def peak_rate(times: list[float]) -> int:
    """Most requests that started within any one-second window."""
    ordered = sorted(times)
    return max((bisect_right(ordered, start + 1.0) - i for i, start in enumerate(ordered)), default=0)


def seed(base_url: str, count: int, workers: int) -> tuple[dict[str, str], StripeGateway, float]:
    """Create `count` subscriptions through the API (unthrottled), a tenth with a due downgrade."""
    settings = load_settings({"STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": base_url,
                              "STRIPE_RATE_LIMIT_PER_SECOND": "100000", "STRIPE_MAX_RETRIES": "3"}, env_file=None)
    gateway = StripeGateway(settings)
    client = gateway.client
    started = time.monotonic()
    product = client.v1.products.create({"name": "Benchmark plans"})
    prices = {
        name: client.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": amount,
                                        "recurring": {"interval": "month"}}).id
        for name, amount in (("basic", 1000), ("pro", 3000))
    }
    customers = [
        gateway.create_customer({"email": f"bench{i}@customer.io"}, idempotency_key=f"bench:cus:{i}")["id"]
        for i in range(max(1, count // 50))
    ]
    for customer in customers:
        gateway.attach_payment_method("pm_card_visa", customer, idempotency_key=f"bench:pm:{customer}")

    def create(i: int) -> None:
        metadata = {"pending_plan": "basic"} if i % 10 == 0 else {}
        gateway.create_subscription(
            {"customer": customers[i % len(customers)], "items": [{"price": prices["pro"]}],
             "cancel_at_period_end": bool(metadata), "metadata": metadata},
            idempotency_key=f"bench:sub:{i}",
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(create, range(count)))
    return prices, gateway, time.monotonic() - started


def sync_billing_db(database_url: str, gateway: StripeGateway, settings: Any) -> int:
    """Mirror Stripe into the billing DB (steady state), untimed; returns the earliest
    period end among the scheduled downgrades."""
    earliest = 2**62
    with UnitOfWork(database_url) as uow:
        for sub in gateway.list_subscriptions():
            upsert_subscription(uow, sub, observed_at=int(time.time()), settings=settings)
            if (sub.get("metadata") or {}).get("pending_plan"):
                earliest = min(earliest, subscription_period(sub)[1] or earliest)
        uow.commit()
    return earliest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    from emulator.server import EmulatorServer

    server = EmulatorServer(host="127.0.0.1", port=0, rate_limit_per_second=100_000)
    server.start()
    try:
        prices, seed_gateway, seed_seconds = seed(server.base_url, args.subscriptions, args.workers)
        print(f"seeded {args.subscriptions} subscriptions in {seed_seconds:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            database_url = f"sqlite:///{tmp}/bench.db"
            upgrade(database_url)
            settings = load_settings({
                "DATABASE_URL": database_url, "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": server.base_url,
                "STRIPE_PRICE_BASIC_MONTHLY": prices["basic"], "STRIPE_PRICE_PRO_MONTHLY": prices["pro"],
            }, env_file=None)
            # Ten minutes before the first scheduled downgrade ends: all of them are due.
            now = sync_billing_db(database_url, seed_gateway, settings) - 600
            # The run itself at Stripe's test-mode limit, which the emulator now enforces too.
            limit = STRIPE_RATE_LIMITS["test"]
            emulator_admin(server.base_url, "rate_limit", {"per_second": limit})
            gateway = StripeGateway(settings, record_request_times=True)
            started = time.monotonic()
            report = run_reconciliation(settings=settings, uow=UnitOfWork(database_url), gateway=gateway,
                                        apply=False, actor="benchmark", trigger="manual", now=now)
            wall = time.monotonic() - started
        ceiling = limit * RATE_LIMIT_SHARE
        peak = peak_rate(gateway.stats.request_times)
        print(f"dry-run wall time:      {wall:.1f} s")
        print(f"subscriptions examined: {report.examined}")
        print(f"list calls:             {report.list_calls} (target <= 110)")
        print(f"requests / retries:     {gateway.stats.requests} / {gateway.stats.retries}")
        print(f"peak request rate:      {peak} req/s in any 1 s window "
              f"(ceiling {ceiling:.0f} = 80 % of {limit} req/s)")
        print(f"findings:               planned {report.planned}, drift {report.drift}, errors {report.errors}")
        print(f"run error:              {report.error or 'none'}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
