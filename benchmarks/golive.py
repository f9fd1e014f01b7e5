"""Go-live timings on the emulator: the preflight (`billing-ops check`) and one
QA matrix run, per case. Pass a customer count to seed a month first: the
preflight and the per-case event pulls then run against a busier account.

Usage: python benchmarks/golive.py [customers]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from db.migrate import upgrade  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402
from services.config import CONSOLE_EVENT_TYPES, load_settings  # noqa: E402
from services.emulator_client import emulator_call  # noqa: E402
from services.preflight import has_blocking_failure, run_preflight  # noqa: E402
from services.qa_matrix import run_matrix  # noqa: E402
from services.runtime import Runtime, set_runtime  # noqa: E402


def _admin(base: str, path: str, payload: dict[str, object]) -> dict[str, object]:
    return emulator_call(base, path, payload, timeout=600)  # type: ignore[no-any-return]


def main(customers: int = 0) -> None:
    server = EmulatorServer(port=0, rate_limit_per_second=1_000_000).start()
    seeded = _admin(server.base_url, "seed", {"customers": customers})
    database = Path(tempfile.mkdtemp()) / "golive_bench.db"
    env = {
        "DATABASE_URL": f"sqlite:///{database}", "STRIPE_API_KEY": "sk_test_bench", "STRIPE_API_BASE": server.base_url,
        "STRIPE_WEBHOOK_SECRETS": "whsec_bench", "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(seeded["prices"]),
        "ADMIN_EMAILS": "admin@example.com", "CONSOLE_WEBHOOK_URL": "https://bench.example.com/billing/webhook",
        "RECONCILE_CRON_ENABLED": "true", "STRIPE_RATE_LIMIT_PER_SECOND": "10000",
    }
    settings = load_settings(env, env_file=None)
    upgrade(settings.database_url)
    runtime = Runtime(settings)
    set_runtime(runtime)
    runtime.gateway.create_webhook_endpoint({"url": settings.console_webhook_url,
                                             "enabled_events": list(CONSOLE_EVENT_TYPES)}, idempotency_key="bench")
    started = time.perf_counter()
    results = run_preflight(runtime)
    print(f"seeded customers: {customers}")
    print(f"preflight: {len(results)} checks in {(time.perf_counter() - started) * 1000:.0f} ms, "
          f"blocking failure: {has_blocking_failure(results)}")
    started = time.perf_counter()
    summary = run_matrix(runtime, case_ids=None, actor="bench", progress=None)
    total = time.perf_counter() - started
    for outcome in summary.outcomes:
        print(f"  {outcome.case_id:24} {outcome.status:7} {outcome.duration_ms:6d} ms  "
              f"events seen {len(outcome.evidence['events']):3d}"
              + (f"  ({outcome.failed_expectation})" if outcome.failed_expectation else ""))
    passed = sum(o.status == "passed" for o in summary.outcomes)
    print(f"QA matrix: {passed}/{len(summary.outcomes)} passed in {total:.1f} s")
    server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
