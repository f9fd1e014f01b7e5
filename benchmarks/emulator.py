"""The emulator beside localstripe: one stripe-SDK workload, both servers, one run.

Each server runs in its own process on its own port (so neither shares the load generator's
GIL, and localstripe's dependencies never mix with ours). Several SDK threads repeat what the
console and its tests do with Stripe: create a customer, attach `pm_card_visa` and make it the
default, create a product and a price, subscribe, list and retrieve invoices, create and
confirm a payment intent, refund it, read the customer and its subscriptions back. The run
prints requests/s and p50/p99 per server and for the ceiling (the same load on a do-nothing
server), then a table of call -> ok/fail on each, beside the goal: >= 2x localstripe's
throughput, answering every call localstripe answers.

localstripe (PyPI) goes in a virtualenv of its own:
    python3 -m venv .venv-localstripe && .venv-localstripe/bin/pip install localstripe
It is found through $LOCALSTRIPE_BIN, then .venv-localstripe/bin/localstripe, then PATH;
without it the emulator runs alone and the reason is printed.

Usage: python3 benchmarks/emulator.py [--seconds 10] [--threads 4] [--quick] [--emulator-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import stripe  # noqa: E402

from benchmarks._common import stop_process  # noqa: E402

GOAL_RATIO = 2.0

# The workload, in order: (call name, function(client, state) -> None). Each step reads what the
# earlier steps stored in `state`; a step whose input is missing counts as failed (it could not
# be asked), so one refused call does not hide behind later ones.
Step = tuple[str, Callable[[stripe.StripeClient, dict[str, Any]], None]]


def _customer_create(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    state["customer"] = client.v1.customers.create({"email": "bench@example.io", "name": "Bench"}).id


def _pm_attach(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    state["pm"] = client.v1.payment_methods.attach("pm_card_visa", {"customer": state["customer"]}).id


def _customer_default_pm(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    client.v1.customers.update(state["customer"],
                               {"invoice_settings": {"default_payment_method": state["pm"]}})


def _product_create(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    state["product"] = client.v1.products.create({"name": "Pro"}).id


def _price_create(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    state["price"] = client.v1.prices.create({"currency": "usd", "unit_amount": 2900, "product": state["product"],
                                              "recurring": {"interval": "month"}}).id


def _subscription_create(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    subscription = client.v1.subscriptions.create({"customer": state["customer"], "items": [{"price": state["price"]}]})
    state["subscription"] = subscription.id
    latest = subscription.latest_invoice
    state["invoice"] = latest if isinstance(latest, str) else getattr(latest, "id", None)


def _invoices_list(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    listed = client.v1.invoices.list({"customer": state["customer"], "limit": 10})
    if not state.get("invoice") and listed.data:
        state["invoice"] = listed.data[0].id


def _invoice_retrieve(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    client.v1.invoices.retrieve(state["invoice"])


def _intent_create(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    state["intent"] = client.v1.payment_intents.create({
        "amount": 1500, "currency": "usd", "customer": state["customer"], "payment_method": state["pm"]}).id


def _intent_confirm(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    confirmed = client.v1.payment_intents.confirm(state["intent"])
    if confirmed.status != "succeeded":
        raise RuntimeError(f"confirm left the intent {confirmed.status}")


def _refund_create(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    client.v1.refunds.create({"payment_intent": state["intent"], "amount": 500})


def _customer_retrieve(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    client.v1.customers.retrieve(state["customer"])


def _subscriptions_list(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    client.v1.subscriptions.list({"customer": state["customer"], "limit": 10})


def _subscription_cancel(client: stripe.StripeClient, state: dict[str, Any]) -> None:
    client.v1.subscriptions.cancel(state["subscription"])


WORKLOAD: list[Step] = [
    ("customers.create", _customer_create),
    ("payment_methods.attach pm_card_visa", _pm_attach),
    ("customers.update default_payment_method", _customer_default_pm),
    ("products.create", _product_create),
    ("prices.create (recurring)", _price_create),
    ("subscriptions.create", _subscription_create),
    ("invoices.list (customer)", _invoices_list),
    ("invoices.retrieve", _invoice_retrieve),
    ("payment_intents.create", _intent_create),
    ("payment_intents.confirm", _intent_confirm),
    ("refunds.create (partial)", _refund_create),
    ("customers.retrieve", _customer_retrieve),
    ("subscriptions.list (customer)", _subscriptions_list),
    ("subscriptions.cancel", _subscription_cancel),
]


@dataclass
class CallTally:
    ok: int = 0
    failed: int = 0
    first_error: str = ""


@dataclass
class Result:
    name: str
    elapsed: float
    threads: int
    latencies: list[float] = field(default_factory=list)  # seconds, every request that got an HTTP answer
    calls: dict[str, CallTally] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]

    def per_second_on(self, calls: set[str]) -> float:
        """Answered requests per second counting only `calls` (the ones both servers answer)."""
        done = sum(tally.ok for name, tally in self.calls.items() if name in calls)
        return done / self.elapsed if self.elapsed else 0.0

    def answered(self) -> set[str]:
        """Calls answered correctly every time they were asked."""
        return {name for name, tally in self.calls.items() if tally.ok and not tally.failed}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/customers?limit=1", timeout=1)  # noqa: S310
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout:.0f} s")


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); from emulator.server import serve_forever; "
            f"serve_forever('127.0.0.1', {port}, None, 1_000_000)")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_listening(port, process)
    return process


def serve_ceiling(port: int) -> None:
    """The ceiling: the emulator's HTTP stack (ThreadingHTTPServer, HTTP/1.1 keep-alive) answering
    every call at once with a canned object, so the figure is what the SDK threads can send."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Canned(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes; no delayed-ACK stall between them

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
            if self.command == "GET" and len(parts) == 2:
                body: dict[str, Any] = {"object": "list", "data": [], "has_more": False, "url": "/" + "/".join(parts)}
            else:
                body = {"id": f"{parts[1][:3]}_ceiling", "object": parts[1].rstrip("s"), "status": "succeeded",
                        "latest_invoice": "in_ceiling"}
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Canned).serve_forever()


def start_ceiling(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-ceiling", str(port)],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_listening(port, process)
    return process


def find_localstripe() -> tuple[str | None, str]:
    """The localstripe executable, or None and why not."""
    candidates = [os.environ.get("LOCALSTRIPE_BIN", ""), str(REPO_ROOT / ".venv-localstripe" / "bin" / "localstripe"),
                  shutil.which("localstripe") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate, ""
    return None, ("localstripe not installed (python3 -m venv .venv-localstripe && "
                  ".venv-localstripe/bin/pip install localstripe, or set LOCALSTRIPE_BIN)")


def start_localstripe(executable: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([executable, "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_listening(port, process)
    return process


def start_on_a_free_port(start: Callable[[int], subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server on a free port; another process on this machine may take the port first, so retry."""
    for attempt in range(3):
        port = _free_port()
        try:
            return start(port), port
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def run_workload(name: str, base_url: str, seconds: float, threads: int, max_rounds: int | None = None) -> Result:
    """Several SDK threads repeat WORKLOAD against base_url for `seconds` (or `max_rounds` each)."""
    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": base_url}, max_network_retries=0)
    result = Result(name=name, elapsed=0.0, threads=threads, calls={step: CallTally() for step, _ in WORKLOAD})
    lock = threading.Lock()
    warm: dict[str, Any] = {}
    for _step, call in WORKLOAD:  # one untimed round: lazy imports and first-request set-up stay out
        try:
            call(client, warm)
        except Exception:  # noqa: S112 - the timed rounds count failures
            continue
    deadline = time.monotonic() + seconds

    def worker() -> None:
        latencies: list[float] = []
        tallies = {step: CallTally() for step, _ in WORKLOAD}
        rounds = 0
        while time.monotonic() < deadline and (max_rounds is None or rounds < max_rounds):
            rounds += 1
            state: dict[str, Any] = {}
            for step, call in WORKLOAD:
                tally = tallies[step]
                started = time.perf_counter()
                try:
                    call(client, state)
                except stripe.StripeError as error:
                    if error.http_status is not None:  # answered, with an error
                        latencies.append(time.perf_counter() - started)
                    tally.failed += 1
                    tally.first_error = tally.first_error or f"{error.http_status}: {error.user_message or error}"[:70]
                    continue
                except (KeyError, AttributeError, RuntimeError, TypeError) as error:
                    tally.failed += 1  # an input an earlier step could not provide, or a wrong answer
                    tally.first_error = tally.first_error or f"{error.__class__.__name__}: {error}"[:70]
                    continue
                latencies.append(time.perf_counter() - started)
                tally.ok += 1
        with lock:
            result.latencies.extend(latencies)
            for step, tally in tallies.items():
                total = result.calls[step]
                total.ok += tally.ok
                total.failed += tally.failed
                total.first_error = total.first_error or tally.first_error

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    began = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    result.elapsed = time.monotonic() - began
    return result


def _summary_line(result: Result) -> str:
    note = "  (the same SDK load on a do-nothing server)" if result.name == "ceiling" else ""
    return (f"{result.name:<12} {result.requests:>7} requests in {result.elapsed:5.1f} s from {result.threads} SDK "
            f"threads = {result.per_second:7.0f} requests/s, p50 {result.percentile(0.50) * 1000:6.1f} ms, "
            f"p99 {result.percentile(0.99) * 1000:6.1f} ms{note}")


def _cell(tally: CallTally | None) -> str:
    if tally is None:
        return "-"
    if tally.ok and not tally.failed:
        return f"ok ({tally.ok})"
    return f"FAIL ({tally.failed}/{tally.ok + tally.failed})"


def report(results: list[Result], peer_skip_reason: str = "") -> str:
    lines = [_summary_line(result) for result in results]
    if peer_skip_reason:
        lines.append(f"localstripe  skipped: {peer_skip_reason}")
    width = max(len(step) for step, _ in WORKLOAD)
    lines.append("")
    lines.append(f"{'call':<{width}}  " + "  ".join(f"{r.name:<16}" for r in results))
    for step, _ in WORKLOAD:
        lines.append(f"{step:<{width}}  " + "  ".join(f"{_cell(r.calls.get(step)):<16}" for r in results))
    errors = [(r.name, step, r.calls[step].first_error) for r in results for step, _ in WORKLOAD
              if r.calls[step].failed]
    if errors:
        lines.append("")
        lines.append("first error per failing call:")
        lines.extend(f"  {name}: {step}: {message}" for name, step, message in errors)
    emulator = next((r for r in results if r.name == "emulator"), None)
    peer = next((r for r in results if r.name == "localstripe"), None)
    lines.append("")
    if emulator and peer:
        common = peer.answered() & emulator.answered()
        ours, theirs = emulator.per_second_on(common), peer.per_second_on(common)
        ratio_all = emulator.per_second / peer.per_second if peer.per_second else float("inf")
        ratio_common = ours / theirs if theirs else float("inf")
        ratio = min(ratio_all, ratio_common)
        missing = sorted(peer.answered() - emulator.answered())
        lines.append(f"on the {len(common)} calls both answer: emulator {ours:.0f} requests/s, "
                     f"localstripe {theirs:.0f} requests/s ({ratio_common:.1f}x); all requests: {ratio_all:.1f}x")
        lines.append(f"goal: >= {GOAL_RATIO:.0f}x localstripe's throughput -> {ratio:.1f}x, the lower of the two "
                     f"({'met' if ratio >= GOAL_RATIO else 'NOT met'})")
        lines.append("goal: answer every call localstripe answers -> "
                     + ("met" if not missing else "NOT met, missing: " + ", ".join(missing))
                     + f" (emulator {len(emulator.answered())}/{len(WORKLOAD)}, "
                     f"localstripe {len(peer.answered())}/{len(WORKLOAD)})")
    elif emulator:
        lines.append(f"goal: >= {GOAL_RATIO:.0f}x localstripe's throughput, answering every call it answers "
                     f"-> not measured (no localstripe); emulator answers {len(emulator.answered())}/{len(WORKLOAD)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per server")
    parser.add_argument("--threads", type=int, default=4, help="SDK threads")
    parser.add_argument("--quick", action="store_true", help="2 s per server, 2 threads")
    parser.add_argument("--emulator-only", action="store_true", help="leave localstripe and the ceiling out")
    parser.add_argument("--serve-ceiling", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_ceiling:
        serve_ceiling(args.serve_ceiling)
        return []
    seconds, threads = (2.0, 2) if args.quick else (args.seconds, args.threads)

    results: list[Result] = []
    process, port = start_on_a_free_port(start_emulator)
    try:
        results.append(run_workload("emulator", f"http://127.0.0.1:{port}", seconds, threads))
    finally:
        stop_process(process)

    skip_reason = "--emulator-only" if args.emulator_only else ""
    executable, why_not = (None, skip_reason) if args.emulator_only else find_localstripe()
    if executable:
        process, port = start_on_a_free_port(lambda free: start_localstripe(executable, free))
        try:
            results.append(run_workload("localstripe", f"http://127.0.0.1:{port}", seconds, threads))
        finally:
            stop_process(process)
    if not args.emulator_only:
        process, port = start_on_a_free_port(start_ceiling)
        try:
            results.append(run_workload("ceiling", f"http://127.0.0.1:{port}", seconds, threads))
        finally:
            stop_process(process)
    print(report(results, why_not))
    return results


if __name__ == "__main__":
    main()
