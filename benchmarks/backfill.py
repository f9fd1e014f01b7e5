"""Backfill from the Events API: `billing-ops sync`'s fetch-and-store phase against the emulator
with its test-mode rate limit on (25 req/s; the gateway keeps to 80 %, 20 req/s).

Prints events/s beside the goal (issue 23: 1,500) and the fetch ceiling: 100 events per page at
20 req/s is 2,000 events/s, and the same pages fetched through the same limiter and thrown away
(nothing stored) show how close the emulator lets us get to it. The emulator runs in its own
process (`billing-ops emulator`), as it does for the demo, so it does not share our GIL.

    python3 benchmarks/backfill.py [--customers 1600] [--no-postgres] [--threads 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import throughput_line  # noqa: E402
from benchmarks.scratch_postgres import scratch_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from services.config import RATE_LIMIT_SHARE, STRIPE_RATE_LIMITS, load_settings  # noqa: E402
from services.emulator_client import emulator_call  # noqa: E402
from services.event_backfill import FETCH_THREADS, EventBackfill  # noqa: E402
from services.runtime import Runtime  # noqa: E402
from services.stripe_gateway import LIST_PAGE_SIZE  # noqa: E402
from services.sync import new_state  # noqa: E402

API_KEY = "sk_test_benchmark0123456789"
GOAL = 1500
BUDGET = STRIPE_RATE_LIMITS["test"] * RATE_LIMIT_SHARE  # 20 req/s
CEILING = BUDGET * LIST_PAGE_SIZE  # 2,000 events/s


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(state_file: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    state = ["--state", state_file] if state_file else []
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "emulator", "--port", str(port),
                                "--rate-limit", "100000", *state], cwd=ROOT, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            emulator_call(base, "requests", method="GET")
            return process, base
        except Exception:  # noqa: BLE001 (not listening yet)
            time.sleep(0.1)
    raise RuntimeError("the emulator did not start")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU (user + system) a process has used: ours, or the emulator's from /proc."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rate(times: list[float]) -> int:
    ordered = sorted(times)
    return max((bisect_right(ordered, start + 1.0) - i for i, start in enumerate(ordered)), default=0)


def runtime_for(base: str, database_url: str) -> Runtime:
    settings = load_settings({"DATABASE_URL": database_url, "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": base,
                              "STRIPE_MODE": "test", "STRIPE_MAX_RETRIES": "5"}, env_file=None)
    upgrade(database_url)
    return Runtime(settings)


class FetchOnly(EventBackfill):
    """The ceiling: the same windows and pages through the same limiter, nothing stored."""

    def _store(self, events: list[dict[str, Any]], windows: list[Any]) -> None:
        self.progress.fetched += len(events)
        self.progress.pages += 1


def run(base: str, database_url: str, threads: int, kind: type[EventBackfill], emulator_pid: int) -> dict[str, Any]:
    runtime = runtime_for(base, database_url)
    runtime.gateway._record_times = True
    state = new_state(int(time.time()) - 30 * 86400, options={"benchmark": True}, now=time.time())
    cpu, emulator_cpu = cpu_seconds(), cpu_seconds(emulator_pid)
    started = time.monotonic()
    done = kind(runtime, state, threads=threads).run()
    seconds = time.monotonic() - started
    cpu, emulator_cpu = cpu_seconds() - cpu, cpu_seconds(emulator_pid) - emulator_cpu
    stats = runtime.gateway.stats
    return {"events": done.fetched, "stored": done.stored + done.ignored, "duplicate": done.duplicate,
            "seconds": seconds, "requests": stats.requests, "pages": done.pages,
            "peak": peak_rate(stats.request_times), "retries": stats.retries,
            "cpu_ms_per_page": 1000 * cpu / max(1, done.pages),
            "emulator_cpu_ms_per_page": 1000 * emulator_cpu / max(1, done.pages)}


def line(label: str, result: dict[str, Any]) -> str:
    share = result["events"] / result["seconds"] / CEILING if result["seconds"] else 0.0
    return throughput_line(
        label, 28, result["events"], result["seconds"], GOAL, f"{share:4.0%} of ceiling",
        f"{result['requests']} requests (peak {result['peak']}/s, {result['retries']} retried 429/5xx)",
        f"CPU per page: ours {result['cpu_ms_per_page']:.0f} ms, emulator {result['emulator_cpu_ms_per_page']:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1600, help="seeded customers (~12 events each)")
    parser.add_argument("--threads", type=int, default=FETCH_THREADS)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    process, base = start_emulator()
    try:
        started = time.monotonic()
        emulator_call(base, "seed", {"customers": args.customers, "seed": 3}, timeout=1800)
        emulator_call(base, "rate_limit", {"per_second": STRIPE_RATE_LIMITS["test"]})
        print(f"seeded {args.customers} customers in {time.monotonic() - started:.0f} s; emulator rate limit "
              f"{STRIPE_RATE_LIMITS['test']} req/s, gateway budget {BUDGET:.0f} req/s, {args.threads} fetch threads")
        print(f"goal {GOAL:,} events/s; fetch ceiling {CEILING:,.0f} events/s (100 per page × {BUDGET:.0f} req/s)")
        emulator_call(base, "requests", method="DELETE")  # the seed's request log
        time.sleep(1.5)  # let the emulator's bucket refill between runs
        with tempfile.TemporaryDirectory() as tmp:
            ceiling = run(base, f"sqlite:///{tmp}/none.db", args.threads, FetchOnly, process.pid)
            print(line("ceiling (fetch, no store)", ceiling))
            time.sleep(1.5)
            print(line("sync, SQLite", run(base, f"sqlite:///{tmp}/sync.db", args.threads, EventBackfill, process.pid)))
        if not args.no_postgres:
            with scratch_postgres("bench_backfill") as url:
                if url:
                    time.sleep(1.5)
                    print(line("sync, PostgreSQL", run(base, url, args.threads, EventBackfill, process.pid)))
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
