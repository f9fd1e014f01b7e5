"""Emulator throughput: a create-customer + create-subscription mix from a few SDK threads.

Prints requests/s and latency percentiles. Usage: python benchmarks/emulator.py [seconds] [threads]
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stripe  # noqa: E402

from emulator.server import EmulatorServer  # noqa: E402


def main(seconds: float = 10.0, threads: int = 4) -> None:
    server = EmulatorServer(port=0, rate_limit_per_second=1_000_000).start()
    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": server.base_url}, max_network_retries=0)
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 2900, "product_data": {"name": "Pro"},
                                     "recurring": {"interval": "month"}})
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        own: list[float] = []
        while time.monotonic() < deadline:
            started = time.monotonic()
            customer = client.v1.customers.create({"email": "bench@example.io", "payment_method": "pm_card_visa"})
            middle = time.monotonic()
            client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
            finished = time.monotonic()
            own.extend([middle - started, finished - middle])
        with lock:
            latencies.extend(own)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    began = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - began
    server.stop()
    ordered = sorted(latencies)
    print(f"emulator: {len(latencies)} requests in {elapsed:.1f} s from {threads} threads "
          f"= {len(latencies) / elapsed:.0f} requests/s")
    print(f"latency p50 {statistics.median(ordered) * 1000:.1f} ms, "
          f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0, int(sys.argv[2]) if len(sys.argv) > 2 else 4)
