"""The webhook receiver under attack: valid deliveries during a forged-signature flood, and
memory while huge chunked bodies stream in.

Starts the real receiver (`billing-ops serve-webhooks`: uvicorn with uvloop/httptools and the
connection limits it sets, one process) on SQLite and on loopback, then measures
  (a) valid-delivery ack p50/p99, quiet: one small client posting signed events one by one;
  (b) the same while wrk floods ~500 req/s of forged signatures (a lua script stamps each with
      the current time, so every one reaches the HMAC comparison);
  (c) the receiver's peak RSS (VmRSS) while 4 clients each try to stream a 200 MB chunked body.
Each figure is printed beside its goal and beside the ceiling: the same load against a
do-nothing ASGI app under the same uvicorn options. Afterwards it checks what the flood left
in the database: a handful of metric rows whose values add up to every forged request.
wrk (Debian's /usr/bin/wrk) and the clients share the machine's 2 cores with the server.
Usage: python benchmarks/attack.py [valid_deliveries] [flood_rps]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._common import stop_process  # noqa: E402
from db.migrate import upgrade  # noqa: E402

SECRET = "whsec_" + secrets.token_hex(16)  # a fresh signing secret per run, never a committed one
WRK = "/usr/bin/wrk"
FLOOD_CONNECTIONS = 10
BIG_BODY_BYTES = 200 * 1000 * 1000
BIG_BODIES = 4
CHUNK = 64 * 1024
GOAL_P99_MS = 100.0
GOAL_RSS_MB = 150.0

FORGED_LUA = """
wrk.method = "POST"
wrk.body = '{"id":"evt_forged","object":"event","type":"invoice.paid","created":1,"livemode":false,' ..
           '"data":{"object":{"id":"in_forged","object":"invoice"}}}'
wrk.headers["Content-Type"] = "application/json"
function request()
  wrk.headers["Stripe-Signature"] = "t=" .. os.time() .. ",v1=" .. string.rep("0", 64)
  return wrk.format()
end
function delay()
  return %d
end
"""


async def null_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ceiling: answers every request at once and reads nothing."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _serve_null(port: int) -> None:
    import uvicorn

    from services.config import load_settings
    from webhooks.server import uvicorn_options

    uvicorn.run(null_app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_options(load_settings()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signed() -> tuple[bytes, str]:
    body = json.dumps({"id": f"evt_attack_{uuid.uuid4().hex}", "object": "event", "type": "invoice.paid",
                       "created": int(time.time()), "livemode": False, "api_version": "2026-10-28.endive",
                       "data": {"object": {"id": "in_attack", "object": "invoice"}}}).encode()
    ts = int(time.time())
    return body, f"t={ts},v1=" + hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def _start(kind: str, database_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_API_KEY": "sk_test_bench",
           "STRIPE_WEBHOOK_SECRETS": SECRET, "STRIPE_MODE": "test"}
    if kind == "receiver":
        command = [sys.executable, "-m", "cli", "serve-webhooks", "--port", str(port)]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-null", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server, port
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"{kind} did not start on port {port}")


def _valid_deliveries(port: int, count: int, expect_ok: bool) -> list[float]:
    """Signed events one by one, about 50 a second (Stripe's pace to one endpoint is far lower)."""
    latencies: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for _ in range(count):
            body, signature = _signed()
            started = time.perf_counter()
            response = http.post("/billing/webhook", content=body, headers={"Stripe-Signature": signature})
            latencies.append(time.perf_counter() - started)
            if expect_ok:
                assert response.status_code == 200, response.text
            time.sleep(0.02)
    return latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def _flood(port: int, rps: int, seconds: int, script_dir: str) -> subprocess.Popen[bytes]:
    script = Path(script_dir) / "forged.lua"
    # Each connection waits this long between requests; ~1 ms of round trip makes up the rest.
    script.write_text(FORGED_LUA % max(1, int(1000 * FLOOD_CONNECTIONS / rps) - 1))
    return subprocess.Popen([WRK, "-t", "1", "-c", str(FLOOD_CONNECTIONS), "-d", f"{seconds}s", "-s", str(script),
                             f"http://127.0.0.1:{port}/billing/webhook"], stdout=subprocess.PIPE)


def _wrk_figures(output: str) -> tuple[int, float, dict[str, int]]:
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    counted = {"non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
               "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0}
    return total, rate, counted


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _big_body(port: int, sent: list[int], index: int) -> None:
    """Stream up to BIG_BODY_BYTES as chunked transfer encoding; stop when the server closes."""
    body, signature = _signed()
    framed = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
    total = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(f"POST /billing/webhook HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n"
                         f"Content-Type: application/json\r\nStripe-Signature: {signature}\r\n\r\n".encode())
            while total < BIG_BODY_BYTES:
                sock.sendall(framed)
                total += CHUNK
            sock.sendall(b"0\r\n\r\n")
            sock.recv(4096)
    except OSError:
        pass  # the receiver answered 413 and closed the connection
    sent[index] = total


def _peak_rss_during_big_bodies(server: subprocess.Popen[bytes], port: int) -> tuple[float, float, list[int]]:
    before = _rss_mb(server.pid)
    sent = [0] * BIG_BODIES
    clients = [threading.Thread(target=_big_body, args=(port, sent, i)) for i in range(BIG_BODIES)]
    for client in clients:
        client.start()
    peak = before
    while any(client.is_alive() for client in clients):
        peak = max(peak, _rss_mb(server.pid))
        time.sleep(0.02)
    for client in clients:
        client.join()
    return before, max(peak, _rss_mb(server.pid)), sent


def _invalid_signature_rows(database_url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from db.models import MetricPoint
    from db.session import UnitOfWork
    from services.metric_points import WEBHOOK_INVALID_SIGNATURE

    with UnitOfWork(database_url) as uow:
        rows, total = uow.session.execute(
            select(func.count(), func.coalesce(func.sum(MetricPoint.value), 0))
            .where(MetricPoint.name == WEBHOOK_INVALID_SIGNATURE)).one()
    return int(rows), int(total)


def measure(kind: str, database_url: str, deliveries: int, rps: int, scratch: str) -> dict[str, Any]:
    server, port = _start(kind, database_url)
    expect_ok = kind == "receiver"
    try:
        _valid_deliveries(port, 20, expect_ok)  # warm up
        quiet = _valid_deliveries(port, deliveries, expect_ok)
        flood_seconds = int(deliveries * 0.03) + 4
        wrk = _flood(port, rps, flood_seconds, scratch)
        time.sleep(1)
        flooded = _valid_deliveries(port, deliveries, expect_ok)
        output = wrk.communicate(timeout=flood_seconds + 30)[0].decode()
        forged, rate, wrk_errors = _wrk_figures(output)
        rss_before, rss_peak, sent = _peak_rss_during_big_bodies(server, port)
    finally:
        stop_process(server, timeout=20)
    return {"quiet": quiet, "flooded": flooded, "forged": forged, "rate": rate, "wrk": wrk_errors,
            "rss_before": rss_before, "rss_peak": rss_peak, "sent": sent}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-null":
        _serve_null(int(sys.argv[2]))
        return
    deliveries = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rps = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    with tempfile.TemporaryDirectory() as scratch:
        database_url = f"sqlite:///{scratch}/attack.db"
        upgrade(database_url)
        receiver = measure("receiver", database_url, deliveries, rps, scratch)
        rows, counted = _invalid_signature_rows(database_url)
        ceiling = measure("null", database_url, deliveries, rps, scratch)
    print(f"webhook receiver under attack (SQLite, one uvicorn process; ceiling = do-nothing ASGI app, "
          f"same uvicorn options; {deliveries} valid deliveries per phase)")
    for label, key in (("(a) valid ack, quiet", "quiet"), ("(b) valid ack, forged flood", "flooded")):
        r, c = receiver[key], ceiling[key]
        print(f"  {label:30s} p50 {_pct(r, 0.5):6.1f} ms  p99 {_pct(r, 0.99):6.1f} ms   "
              f"(goal p99 < {GOAL_P99_MS:.0f} ms; ceiling p50 {_pct(c, 0.5):.1f} ms, p99 {_pct(c, 0.99):.1f} ms)")
    print(f"  {'    flood':30s} {receiver['rate']:.0f} forged req/s ({receiver['forged']} in all, "
          f"{receiver['wrk']['non_2xx']} refused, {receiver['wrk']['socket_errors']} socket errors; "
          f"ceiling run {ceiling['rate']:.0f} req/s)")
    print(f"  {'    invalid-signature rows':30s} {rows} metric rows counting {counted} refusals "
          f"(goal: a handful of rows, count = forged requests sent = {receiver['forged']} "
          f"+ up to {FLOOD_CONNECTIONS} cut off when wrk stopped)")
    print(f"  {'(c) RSS, 4 x 200 MB chunked':30s} {receiver['rss_peak']:.0f} MB peak "
          f"(idle {receiver['rss_before']:.0f} MB; goal < {GOAL_RSS_MB:.0f} MB; "
          f"ceiling {ceiling['rss_peak']:.0f} MB peak, idle {ceiling['rss_before']:.0f} MB)")
    print(f"  {'    bytes sent before close':30s} {', '.join(f'{n / 1e6:.1f} MB' for n in receiver['sent'])} "
          f"(ceiling: {', '.join(f'{n / 1e6:.0f} MB' for n in ceiling['sent'])})")


if __name__ == "__main__":
    main()
