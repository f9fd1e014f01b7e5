"""Page render times with a large billing DB: the disputes queue with 100k disputes.

Cold = a fresh AppTest session (first render); warm = a rerun of the same session.
Usage: python benchmarks/pages.py [number of disputes, default 100000]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from db.migrate import upgrade  # noqa: E402
from db.models import Dispute  # noqa: E402
from db.session import get_engine  # noqa: E402
from services.auth import Identity  # noqa: E402
from services.config import load_settings  # noqa: E402
from services.runtime import Runtime, set_runtime  # noqa: E402

STATUSES = ["needs_response", "warning_needs_response", "under_review", "won", "lost"]
REASONS = ["fraudulent", "subscription_canceled", "product_not_received", "duplicate", "general"]


def load(url: str, count: int) -> None:
    upgrade(url)
    rng = random.Random(3)
    now = datetime.now(UTC)
    with get_engine(url).begin() as conn:
        for offset in range(0, count, 20_000):
            conn.execute(insert(Dispute), [{
                "id": f"dp_bench_{offset + i}", "charge_id": f"ch_{offset + i}", "amount": rng.randint(500, 50_000),
                "currency": "usd", "reason": rng.choice(REASONS), "status": rng.choice(STATUSES),
                "customer_email": f"c{offset + i}@example.io", "due_by": now + timedelta(hours=rng.randint(-72, 240)),
                "created": now - timedelta(days=rng.randint(0, 60)), "raw": {},
            } for i in range(min(20_000, count - offset))])


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/pages.db"
        started = time.perf_counter()
        load(url, count)
        print(f"loaded {count:,} disputes in {time.perf_counter() - started:.1f} s")
        set_runtime(Runtime(load_settings({"DATABASE_URL": url, "ADMIN_EMAILS": "admin@example.com",
                                           "STRIPE_API_KEY": "sk_test_bench", "STRIPE_API_BASE": "http://127.0.0.1:9",
                                           "STRIPE_MAX_RETRIES": "0"}, env_file=None)))
        cold, warm = [], []
        for _ in range(3):
            at = AppTest.from_file(str(ROOT / "app_pages" / "disputes.py"), default_timeout=120)
            at.session_state["identity"] = Identity("admin@example.com", signed_in_at=time.time(),
                                                    last_seen_at=time.time())
            began = time.perf_counter()
            at.run()
            cold.append(time.perf_counter() - began)
            for _ in range(3):
                began = time.perf_counter()
                at.run()
                warm.append(time.perf_counter() - began)
        print(f"disputes queue with {count:,} disputes: cold render median {statistics.median(cold) * 1000:.0f} ms, "
              f"warm rerun median {statistics.median(warm) * 1000:.0f} ms (max {max(warm) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
