"""Helpers the benchmark scripts share."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, p95) of `repeats` calls in milliseconds, after one warm-up call (page cache, plan)."""
    fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """Stop a server the benchmark started: SIGTERM, then SIGKILL if it is still up after `timeout`."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def throughput_line(label: str, width: int, events: int, seconds: float, goal: float, *details: str) -> str:
    """One result line: `label  N events in S s = R events/s · X× goal`, then each detail after ` · `."""
    rate = events / seconds if seconds else 0.0
    head = (f"{label:<{width}} {events:>7,} events in {seconds:7.2f} s = {rate:7,.0f} events/s"
            f" · {rate / goal:5.2f}× goal")
    return " · ".join((head, *details))
