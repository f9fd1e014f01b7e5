"""First-24h board at scale: bulk-load N metric points, then time the board.

The board reads whole hours from the hourly rollup (metric_hourly, kept up to date by
record_metrics; here rebuilt once after the bulk load, which bypasses it) and the partial hours
at either end of its window from the points. Prints import and rollup-rebuild time, and p50/p95
of the board for 24 h and 7 d windows (starting 17 minutes past an hour, as a go-live time does)
from the rollup beside the peer: the same board summed from the raw points. On SQLite and on
PostgreSQL (when reachable). Goals: import of 1M points < 5 min, board p95 <= 300 ms for 24 h and 7 d.
Usage: python benchmarks/metrics.py [points]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from benchmarks.scratch_postgres import scratch_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import MetricPoint  # noqa: E402
from db.session import UnitOfWork, dispose_engines, get_engine  # noqa: E402
from services import metric_points as m  # noqa: E402
from services import metric_rollup  # noqa: E402
from services.metrics import board  # noqa: E402

CHUNK = 50_000
START = datetime(2026, 11, 1, tzinfo=UTC)


def load(url: str, points: int) -> float:
    upgrade(url)
    engine = get_engine(url)
    rng = random.Random(1)
    names = list(m.ALL_METRICS)
    started = time.perf_counter()
    with engine.begin() as conn:
        for offset in range(0, points, CHUNK):
            rows = [{"name": rng.choice(names), "at": START + timedelta(seconds=rng.randint(0, 14 * 86400)),
                     "value": 1, "tags": {"plan": rng.choice(("basic", "pro", "business"))}}
                    for _ in range(min(CHUNK, points - offset))]
            conn.execute(insert(MetricPoint), rows)
    return time.perf_counter() - started


def rebuild_rollup(url: str) -> float:
    started = time.perf_counter()
    with UnitOfWork(url) as uow:
        metric_rollup.rebuild(uow)
        uow.commit()
    return time.perf_counter() - started


def query_times(url: str, span: timedelta, *, from_points: bool, runs: int = 20) -> list[float]:
    times = []
    for i in range(runs):
        start = START + timedelta(hours=i * 6, minutes=17)
        began = time.perf_counter()
        board(UnitOfWork(url), start=start, end=start + span, from_points=from_points)
        times.append(time.perf_counter() - began)
    return sorted(times)


def print_board_times(label: str, url: str) -> None:
    for name, span in (("24 h", timedelta(hours=24)), ("7 d", timedelta(days=7))):
        figures = []
        for source, from_points in (("rollup", False), ("raw points (peer)", True)):
            times = query_times(url, span, from_points=from_points)
            p95 = times[int(len(times) * 0.95) - 1]
            figures.append(f"{source} p50 {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
        print(f"{label}: board {name}: " + "; ".join(figures) + " (goal p95 <= 300 ms)")


def report(label: str, url: str, points: int) -> None:
    seconds = load(url, points)
    print(f"{label}: imported {points:,} points in {seconds:.1f} s ({points / seconds:,.0f}/s)")
    print(f"{label}: rollup rebuilt from the points in {rebuild_rollup(url):.1f} s")
    print_board_times(label, url)
    if url.startswith("postgresql"):
        # Right after a bulk load PostgreSQL cannot answer from the covering index alone until
        # the visibility map is set; autovacuum does that within a minute or so of the load.
        with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE metric_points")
        print_board_times(f"{label} after VACUUM ANALYZE (as autovacuum leaves it)", url)


def main() -> None:
    points = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as scratch:
        report("SQLite", f"sqlite:///{scratch}/metrics.db", points)
        dispose_engines()
    with scratch_postgres("bo_metrics") as url:
        if url is not None:
            report("PostgreSQL", url, points)


if __name__ == "__main__":
    main()
