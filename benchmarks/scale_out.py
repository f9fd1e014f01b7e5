"""Scale-out on PostgreSQL (issue 23): receive throughput with 1 -> 2 -> 4 receivers, drain throughput
with 1 -> 3 workers, and the exactly-once run: 4 receivers and 3 workers (each its own OS process, as
on separate machines) on one PostgreSQL, 100,000 unique events with 10 % delivered twice, every copy
to a random receiver.

Set-up (benchmarks/scale_out_fleet.py, shared with tests/integration/test_scale_out_postgres.py):
`billing-ops serve-webhooks --workers 1` once per port, `billing-ops worker` per worker, the Stripe
emulator as the workers' Stripe, a scratch database per run. One event in REREAD_EVERY (20) has a
same-second sibling with another copy stored before the run, so the worker re-reads its object from
Stripe once; the others' copies cannot be stale and are stored as they are. Events are pre-signed
(HMAC-SHA256 over `t.payload`).

- Generator ceiling: the same generator against as many do-nothing ASGI processes
  (benchmarks/webhook_peers.py:ceiling), so the reader sees it is not the bottleneck.
- Receive: for R receivers, `wrk` (one process per port, C/R connections each, replaying per-thread
  files through benchmarks/webhooks_replay.lua) for --seconds; deliveries acknowledged per second,
  ack p50/p99 (of the slowest wrk), and receiver CPU per delivery. Workers are not running.
- Drain: W workers on a stored backlog (the receive runs' databases), processed events per second over
  --seconds, counted from the first processed event (start-up left out).
- Exactly once: 4 receivers + 3 workers together on --events events; what wrk did not get
  acknowledged (its threads' first request is never sent, a timeout) is delivered again from Python, as
  Stripe redelivers; then wait for the drain and check every event stored once, processed once
  (attempts 1, one effect row each, exactly one Stripe GET for each object to re-read and none for the
  rest, per the emulator's request log) and the duplicates counted as sent.

`--generator python` uses the httpx thread generator instead of wrk (labelled; on 2 cores it is the
bottleneck). `--quick` is a small smoke run.

Usage: python benchmarks/scale_out.py [--events N] [--seconds S] [--connections C]
       [--receivers 1,2,4] [--workers 1,3] [--generator wrk|python] [--quick] [--no-full] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.scale_out_fleet import (  # noqa: E402
    REREAD_EVERY,
    WEBHOOK_PATH,
    Fleet,
    SignedEvent,
    child_env,
    deliver,
    delivery_plan,
    earlier_ids,
    exactly_once,
    make_events,
    prepare_database,
    sign,
    status_counts,
    store_earlier_deliveries,
    wait_drained,
)
from benchmarks.scratch_postgres import scratch_postgres  # noqa: E402
from benchmarks.webhooks import tree_cpu_seconds  # noqa: E402

LUA = Path(__file__).with_name("webhooks_replay.lua")
DUPLICATE_SHARE = 0.10
MAX_RATE_PER_SECOND = 6_000  # events signed per receive run: enough that no wrk thread runs dry
WRK_CHUNK_SECONDS = 100  # each wrk run of the exactly-once run, at the slowest receive rate seen


# --- generators ------------------------------------------------------------------------------------
def wrk_deliver(plan: list[tuple[int, int]], events: list[SignedEvent], ports: list[int], connections: int,
                seconds: float, directory: Path, secret: str, *, cycle: bool = False) -> dict[str, Any]:
    """One wrk process per port, all at once; each thread replays its own file of deliveries,
    signed just before (a signature over 5 minutes old is refused, so a run stays well under that)."""
    per_port = max(1, connections // len(ports))
    shares: list[list[list[int]]] = [[[] for _ in range(per_port)] for _ in ports]
    seen = [0] * len(ports)
    for index, receiver in plan:
        shares[receiver][seen[receiver] % per_port].append(index)
        seen[receiver] += 1
    runs = []
    for r, port in enumerate(ports):
        shares[r] = [own for own in shares[r] if own]  # a wrk thread needs a line to send
        if not shares[r]:
            continue
        folder = directory / f"port{r}"
        folder.mkdir(parents=True, exist_ok=True)
        for t, indexes in enumerate(shares[r]):
            lines = [f"{sign(events[i].body, secret)}\t{events[i].body.decode()}" for i in indexes]
            (folder / f"t{t}.txt").write_text("\n".join(lines) + "\n")
        result = folder / "result.json"
        threads = len(shares[r])
        command = ["wrk", "-t", str(threads), "-c", str(threads), "-d", f"{max(1, round(seconds))}s",
                   "--timeout", "30s", "-s", str(LUA), f"http://127.0.0.1:{port}{WEBHOOK_PATH}", "--", str(folder),
                   "1" if cycle else "0"]
        runs.append((r, subprocess.Popen(command, env={**os.environ, "WRK_RESULT": str(result)},
                                         stdout=subprocess.DEVNULL), result))
    acked: Counter[int] = Counter()  # event index -> 200 answers
    refused = requests = 0
    p50 = p99 = duration = 0.0
    for r, process, result in runs:
        process.wait()
        summary = json.loads(result.read_text())
        requests += summary["requests"]
        duration = max(duration, summary["duration_us"] / 1e6)
        p50, p99 = max(p50, summary["p50_us"] / 1000), max(p99, summary["p99_us"] / 1000)
        for thread in summary["threads"]:
            own = shares[r][thread["id"]]
            failed = {int(item.split(":")[0]) for item in thread["failed"].split(",") if item}
            skipped = {int(item) for item in thread["skipped"].split(",") if item}
            refused += len(failed)
            for n in range(min(thread["last"] + 1, len(own))):
                if n not in skipped and n not in failed:
                    acked[own[n]] += 1
    return {"requests": requests, "acked": acked, "refused": refused, "seconds": duration, "p50_ms": p50,
            "p99_ms": p99}


def python_deliver(plan: list[tuple[int, int]], events: list[SignedEvent], ports: list[int], connections: int,
                   seconds: float, directory: Path, secret: str, *, cycle: bool = False) -> dict[str, Any]:
    """The httpx thread generator for `seconds` (no latency figures; cycling is not needed: it never
    gets through a plan sized for wrk)."""
    del directory, cycle
    done = deliver(plan, events, ports, threads=connections, stop_after=seconds, secret=secret)
    return {"requests": sum(done.statuses.values()), "acked": done.acked,
            "refused": sum(n for status, n in done.statuses.items() if status != 200), "seconds": done.seconds,
            "p50_ms": 0.0, "p99_ms": 0.0}


# --- phases ----------------------------------------------------------------------------------------
def ceiling(fleet: Fleet, receivers: int, args: argparse.Namespace, scratch: Path) -> float:
    ports = [fleet.ceiling() for _ in range(receivers)]
    events = make_events(4000, "whsec_ceiling", "ceil")  # cycled: the ceiling stores nothing
    plan, _ = delivery_plan(len(events), 0.0, receivers, seed=1)
    drive = wrk_deliver if args.generator == "wrk" else python_deliver
    result = drive(plan, events, ports, args.connections, args.seconds, scratch / f"ceil{receivers}", "whsec_ceiling",
                   cycle=True)
    fleet.stop(fleet.named("ceiling"))
    return float(result["requests"] / result["seconds"]) if result["seconds"] else 0.0


def receive(fleet: Fleet, url: str, receivers: int, secret: str, args: argparse.Namespace,
            scratch: Path) -> dict[str, Any]:
    count = int(MAX_RATE_PER_SECOND * args.seconds)
    events = make_events(count, secret, uuid.uuid4().hex[:6])
    store_earlier_deliveries(url, events)  # so the drain that follows re-reads the same share
    plan, _copies = delivery_plan(count, DUPLICATE_SHARE, receivers, seed=receivers)
    ports = fleet.receivers(receivers)
    pids = fleet.pids("receiver")
    cpu_before = sum(tree_cpu_seconds(pid) for pid in pids)
    drive = wrk_deliver if args.generator == "wrk" else python_deliver
    result = drive(plan, events, ports, args.connections, args.seconds, scratch / f"recv{receivers}", secret)
    cpu = sum(tree_cpu_seconds(pid) for pid in pids) - cpu_before
    fleet.stop(fleet.named("receiver"))
    acked: Counter[int] = result["acked"]
    deliveries = sum(acked.values())
    from sqlalchemy import func, select

    from db.models import StripeEvent
    from db.session import UnitOfWork, dispose_engines

    with UnitOfWork(url) as uow:
        stored = set(uow.session.execute(select(StripeEvent.id)).scalars()) - earlier_ids(events)
        copies = uow.session.execute(select(func.sum(StripeEvent.duplicate_deliveries))).scalar_one() or 0
    dispose_engines()
    acked_ids = {events[i].id for i in acked}
    return {"receivers": receivers, "events_per_second": deliveries / result["seconds"] if result["seconds"] else 0,
            "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "acknowledged": deliveries,
            "refused": result["refused"], "cpu_us_per_delivery": round(cpu / deliveries * 1e6) if deliveries else None,
            "exactly_once": acked_ids <= stored and stored <= {e.id for e in events}
            and deliveries - len(acked_ids) <= copies, "backlog": len(stored)}


def drain(fleet: Fleet, url: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    counts = status_counts(url)
    backlog, before = counts.get("pending", 0), counts.get("processed", 0)  # the re-read events' siblings
    processes = fleet.workers(workers)
    deadline = time.monotonic() + 120
    while status_counts(url).get("processed", 0) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    start, began = status_counts(url).get("processed", 0) - before, time.monotonic()
    cpu_before = sum(tree_cpu_seconds(p.pid) for p in processes)
    time.sleep(args.seconds)
    done, elapsed = status_counts(url).get("processed", 0) - before - start, time.monotonic() - began
    cpu = sum(tree_cpu_seconds(p.pid) for p in processes) - cpu_before
    fleet.stop(fleet.named("worker"))
    return {"workers": workers, "events_per_second": done / elapsed, "processed": done, "backlog": backlog,
            "cpu_us_per_event": round(cpu / done * 1e6) if done else None,
            "ran_dry": done + start >= backlog}


def full_run(fleet: Fleet, url: str, secret: str, emulator: str, args: argparse.Namespace,
             scratch: Path) -> dict[str, Any]:
    httpx.delete(f"{emulator}/_emulator/requests", timeout=60)
    events = make_events(args.events, secret, uuid.uuid4().hex[:6])
    store_earlier_deliveries(url, events)
    plan, copies = delivery_plan(args.events, DUPLICATE_SHARE, 4, seed=100)
    ports = fleet.receivers(4)
    fleet.workers(3)
    began = time.monotonic()
    answered: Counter[int] = Counter()
    wrk_refused = 0  # non-200 answers to wrk (they are delivered again, so they must be counted here)
    if args.generator == "wrk":
        # wrk runs for a fixed time, and its files are signed when written: chunks of about WRK_CHUNK_SECONDS
        # at the slowest receive rate seen (the workers now compete for the CPU, so many run short).
        rate = max(50.0, args.slowest_receive)
        size = int(rate * WRK_CHUNK_SECONDS)
        planned = Counter(index for index, _r in plan)
        again = plan
        rng = random.Random(101)
        for round_ in range(3):  # what a round did not get acknowledged goes again, each copy to a random receiver
            for n, start in enumerate(range(0, len(again), size)):
                chunk = again[start:start + size]
                result = wrk_deliver(chunk, events, ports, args.connections,
                                     min(200.0, len(chunk) / rate * 1.6 + 5), scratch / f"full{round_}-{n}", secret)
                answered.update(result["acked"])
                wrk_refused += result["refused"]
            left = planned - answered
            again = [(index, rng.randrange(4)) for index in left.elements()]
            if len(again) < 200:  # the last few (each wrk thread's first line is never sent) from Python
                break
    else:
        again = plan
    redelivered = deliver(again, events, ports, threads=args.connections, secret=secret) if again else None
    if redelivered and (redelivered.unanswered or set(redelivered.statuses) != {200}):
        raise RuntimeError(f"redelivery not acknowledged: {redelivered.statuses}, {redelivered.unanswered} unanswered")
    received_in = time.monotonic() - began
    total_ok = sum(answered.values()) + (redelivered.statuses.get(200, 0) if redelivered else 0)
    drained_in = wait_drained(url, args.events, stall_seconds=300) + received_in
    fleet.stop(fleet.named("receiver", "worker"))
    found = exactly_once(url, events, emulator)
    found.update(copies_sent=copies, answered_200=total_ok, deliveries=len(plan), redelivered=len(again),
                 received_seconds=received_in, all_processed_seconds=drained_in,
                 server_errors=(redelivered.statuses if redelivered else {}))
    found["ok"] = (found["stored_once"] and found["statuses"] == {"processed": args.events}
                   and found["attempts"] == {1: args.events} and found["rereads_match"]
                   and found["effect_rows"] == args.events and total_ok == len(plan)
                   and found["duplicate_deliveries"] == total_ok - args.events == found["duplicate_points"]
                   and wrk_refused == 0)
    found["wrk_refused"] = wrk_refused
    return found


# --- report ----------------------------------------------------------------------------------------
def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    how = "wrk, Lua replay" if args.generator == "wrk" else "Python httpx threads (labelled: the bottleneck on 2 cores)"
    print(f"\nScale-out on PostgreSQL, generator {how}, {args.connections} connections split over the receivers, "
          f"{args.seconds:g} s per figure, {DUPLICATE_SHARE:.0%} duplicates to random receivers")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end "
          "(other sessions share it)")
    rows = figures["receive"]
    if rows:
        base = rows[0]["events_per_second"] or 1
        print(f"\n  {'receivers':>9} {'deliveries/s':>12} {'x 1 recv':>8} {'ideal':>6} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'CPU/delivery':>12} {'generator ceiling':>17}  exactly once")
        for row in rows:
            print(f"  {row['receivers']:>9} {row['events_per_second']:12,.0f} {row['events_per_second'] / base:8.2f} "
                  f"{row['receivers'] / rows[0]['receivers']:6.0f} {row['p50_ms']:7.1f} {row['p99_ms']:7.1f} "
                  f"{row['cpu_us_per_delivery'] or 0:>9,} us {row['ceiling']:>13,.0f}/s  "
                  f"{'yes' if row['exactly_once'] else 'NO'}"
                  + (f"  refused {row['refused']}" if row["refused"] else ""))
    rows = figures["drain"]
    if rows:
        base = rows[0]["events_per_second"] or 1
        print(f"\n  {'workers':>9} {'events/s':>12} {'x 1 worker':>10} {'ideal':>6} {'CPU/event':>10}  backlog")
        for row in rows:
            print(f"  {row['workers']:>9} {row['events_per_second']:12,.1f} {row['events_per_second'] / base:10.2f} "
                  f"{row['workers'] / rows[0]['workers']:6.0f} {row['cpu_us_per_event'] or 0:>7,} us  "
                  f"{row['backlog']:,}" + ("  (ran dry: figure is a lower bound)" if row["ran_dry"] else ""))
    full = figures.get("full")
    if full:
        print(f"\n  exactly once, 4 receivers + 3 workers, {args.events:,} events + {full['copies_sent']:,} copies "
              f"({full['deliveries']:,} deliveries, {full['redelivered']:,} sent again from Python):")
        print(f"    stored {full['stored']:,} (once each: {full['stored_once']}), statuses {full['statuses']}, "
              f"attempts {full['attempts']}, effect rows {full['effect_rows']:,}")
        print(f"    Stripe re-reads: objects by GETs {full['stripe_reads']}, {full['rereads_expected']:,} expected "
              f"(1 in {REREAD_EVERY}), {full['stripe_requests']:,} /v1 requests in the emulator's log: "
              f"{'match' if full['rereads_match'] else 'DO NOT MATCH'}")
        print(f"    200 answers {full['answered_200']:,} of {full['deliveries']:,}; duplicate_deliveries "
              f"{full['duplicate_deliveries']:,} (expected {full['answered_200'] - args.events:,}), duplicate points "
              f"{full['duplicate_points']:,}; wrk non-200 {full['wrk_refused']}")
        print(f"    all received in {full['received_seconds']:.0f} s, all processed in "
              f"{full['all_processed_seconds']:.0f} s")
    print("\ngoal: throughput scales 1 -> 2 -> 4 receivers and 1 -> 3 workers (ideal: x2, x4, x3); "
          f"exactly once: {'yes' if figures['exactly_once'] else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the exactly-once run")
    parser.add_argument("--seconds", type=float, default=10.0, help="per receive / drain figure")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--receivers", type=lambda v: [int(n) for n in v.split(",")], default=[1, 2, 4])
    parser.add_argument("--workers", type=lambda v: [int(n) for n in v.split(",")], default=[1, 3])
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s figures, 1,2 receivers, 500 events")
    parser.add_argument("--no-full", action="store_true", help="skip the exactly-once run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.receivers, args.events = 2.0, [1, 2], 500
    if args.generator == "wrk" and shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (or --generator python)")
        return 2
    with scratch_postgres("bo_scale_probe") as probe:
        if probe is None:
            print("PostgreSQL at 127.0.0.1:5432 is unreachable: nothing to measure")
            return 2
    secret = "whsec_" + secrets.token_hex(16)
    figures: dict[str, Any] = {"receive": [], "drain": [], "full": None, "exactly_once": True}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        fleet = Fleet(scratch)
        try:
            emulator = fleet.emulator()
            for n, receivers in enumerate(args.receivers):
                row_ceiling = ceiling(fleet, receivers, args, scratch)
                with scratch_postgres("bo_scale_recv") as url:
                    assert url is not None
                    prepare_database(url)
                    fleet.env = child_env(url, secret, emulator)
                    row = receive(fleet, url, receivers, secret, args, scratch)
                    row["ceiling"] = row_ceiling
                    figures["receive"].append(row)
                    if n < len(args.workers):
                        figures["drain"].append(drain(fleet, url, args.workers[n], args))
                    print(f"  ... {receivers} receiver(s) done", flush=True)
            args.slowest_receive = min((r["events_per_second"] for r in figures["receive"]), default=200.0)
            figures["exactly_once"] = all(r["exactly_once"] for r in figures["receive"])
            report(figures, args)  # the scaling figures now: the exactly-once run takes long
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2, default=str))
            if not args.no_full:
                with scratch_postgres("bo_scale_full") as url:
                    assert url is not None
                    prepare_database(url)
                    fleet.env = child_env(url, secret, emulator)
                    figures["full"] = full_run(fleet, url, secret, emulator, args, scratch)
        finally:
            fleet.close()
    figures["exactly_once"] = (all(r["exactly_once"] for r in figures["receive"])
                               and (figures["full"] is None or figures["full"]["ok"]))
    if figures["full"]:
        report({**figures, "receive": [], "drain": []}, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if figures["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
