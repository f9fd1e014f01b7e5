"""Early fraud warnings: queue and funnel query time over many warnings, and 50 concurrent
refund clicks on one warning against the in-process emulator.

Prints figures only (no asserts): queue query (default filter) and funnel times in ms, and for
the concurrent clicks the wall time, refunds Stripe received (must be 1) and refused clicks.

    python benchmarks/efw.py [--warnings 5000] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from db.migrate import upgrade  # noqa: E402
from db.models import Charge, FraudWarning  # noqa: E402
from db.models.base import utcnow  # noqa: E402
from db.session import UnitOfWork  # noqa: E402
from services import (
    efw_funnel,  # noqa: E402
    stripe_mapping,  # noqa: E402
)
from services import fraud_warnings as efw  # noqa: E402
from services.config import load_settings  # noqa: E402
from services.stripe_gateway import StripeGateway  # noqa: E402

API_KEY = "sk_test_benchmark0123456789"
ADMIN = "admin@benchmark.example"


def seed(database_url: str, count: int) -> None:
    now = utcnow()
    uow = UnitOfWork(database_url)
    with uow:
        for i in range(count):
            charge = f"ch_bench{i}"
            uow.session.add(Charge(id=charge, amount=1000 + i, currency="usd", paid=True,
                                   amount_refunded=0 if i % 5 else 500))
            uow.session.add(FraudWarning(
                id=f"issfr_bench{i}", charge_id=charge, amount=1000 + i, currency="usd",
                fraud_type=("card_never_received", "fraudulent_card_application", "misc")[i % 3],
                actionable=i % 7 != 0, created=now - timedelta(minutes=i),
                status=("open", "open", "refunded", "ignored")[i % 4],
            ))
        uow.commit()


def time_ms(run: object, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def concurrent_refunds(database_url: str) -> None:
    from emulator.server import EmulatorServer

    server = EmulatorServer(host="127.0.0.1", port=0, rate_limit_per_second=100_000)
    server.start()
    try:
        settings = load_settings({"STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": server.base_url,
                                  "STRIPE_RATE_LIMIT_PER_SECOND": "100000", "DATABASE_URL": database_url,
                                  "ADMIN_EMAILS": ADMIN}, env_file=None)
        gateway = StripeGateway(settings)
        customer = gateway.create_customer({"email": "bench@example.io"}, idempotency_key="bench-customer")
        intent = gateway.client.v1.payment_intents.create({
            "amount": 7000, "currency": "usd", "customer": customer["id"],
            "payment_method": "pm_card_createIssuerFraudRecord", "confirm": True})
        warning = next(gateway.list_early_fraud_warnings(charge=intent.latest_charge))
        uow = UnitOfWork(database_url)
        with uow:
            stripe_mapping.upsert_charge(uow, gateway.retrieve_charge(str(intent.latest_charge)),
                                         observed_at=int(time.time()))
            stripe_mapping.upsert_fraud_warning(uow, warning, observed_at=int(time.time()))
            uow.commit()
        outcomes: list[str] = []
        barrier = threading.Barrier(50)

        def click() -> None:
            barrier.wait()
            try:
                efw.refund_fraud_warning(warning["id"], confirmed_amount=7000, actor=ADMIN, settings=settings,
                                         uow=UnitOfWork(database_url), gateway=gateway)
                outcomes.append("ok")
            except efw.EfwActionError:
                outcomes.append("refused")

        threads = [threading.Thread(target=click) for _ in range(50)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        refunds = gateway.client.v1.refunds.list({"charge": str(intent.latest_charge)}).data
        print(f"50 concurrent refund clicks: {wall * 1000:.0f} ms wall, {outcomes.count('ok')} ok, "
              f"{outcomes.count('refused')} refused, refunds at Stripe: {len(refunds)}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warnings", type=int, default=5000)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/efw_bench.db"
        upgrade(database_url)
        started = time.perf_counter()
        seed(database_url, args.warnings)
        print(f"database: {database_url.split('://')[0]}; seeded {args.warnings} warnings in "
              f"{time.perf_counter() - started:.1f} s")
        queue_ms = time_ms(lambda: efw.list_queue(UnitOfWork(database_url), efw.EfwFilter()))
        all_ms = time_ms(lambda: efw.list_queue(UnitOfWork(database_url), efw.EfwFilter(statuses=())))
        now = utcnow()
        funnel_ms = time_ms(lambda: efw_funnel.funnel(UnitOfWork(database_url), since=now - timedelta(days=30),
                                               until=now + timedelta(minutes=1)))
        print(f"queue (open, default order): {queue_ms:.1f} ms; queue (all statuses): {all_ms:.1f} ms; "
              f"funnel (30 days): {funnel_ms:.1f} ms  [median of 5]")
        concurrent_refunds(database_url)


if __name__ == "__main__":
    main()
