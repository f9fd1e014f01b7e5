"""`billing-ops demo`: the whole console on one machine with no Stripe account.

Entry-layer wiring (beside cli.py): it starts the emulator, the receiver, the worker and
the console, so it imports emulator/ and webhooks/, which services/ never do.

Order matters: the emulator seeds a realistic month first (its events stay in
the Events API), the console's DB is migrated, its webhook endpoint is
registered and the receiver started, then `sync` backfills the month exactly
as a first install against a real account would. From then on, changes made
in the console reach the DB through signed webhooks like in production.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from services.config import CONSOLE_EVENT_TYPES, load_settings
from services.emulator_client import emulator_call

REPO_ROOT = Path(__file__).resolve().parent
DEMO_API_KEY = "sk_test_demo_" + "0" * 24  # the emulator accepts any sk_test_ key

# The demo's people: one per user of DESIGN.md, plus someone outside the team.
DEMO_USERS: dict[str, dict[str, str]] = {
    "ops@example.com": {"name": "Olivia Ops", "password": "demo-ops"},
    "eng.lead@example.com": {"name": "Eli Engineer", "password": "demo-eng"},
    "product.owner@example.com": {"name": "Priya Product", "password": "demo-po"},
    "viewer@outside.io": {"name": "Victor Viewer", "password": "demo-viewer"},
}


@dataclass(frozen=True)
class DemoEnvironment:
    env: dict[str, str]
    console_url: str
    webhook_url: str
    emulator_url: str


def write_credentials_file(path: Path, users: Mapping[str, Mapping[str, str]]) -> None:
    """A streamlit-authenticator credentials file with bcrypt-hashed passwords."""
    usernames = {
        email: {
            "email": email,
            "name": user["name"],
            "password": bcrypt.hashpw(user["password"].encode(), bcrypt.gensalt(rounds=10)).decode(),
        }
        for email, user in users.items()
    }
    config = {
        "credentials": {"usernames": usernames},
        "cookie": {"name": "billing_ops_demo", "key": secrets.token_urlsafe(32), "expiry_days": 0},
    }
    path.write_text(yaml.safe_dump(config))


DEMO_ENV_FILE = "demo.env"


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """The demo's settings as an env file only its owner can read (it holds the demo's keys),
    so any command can run against the running demo: `billing-ops --env-file <path> ...`."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        for name, value in env.items():
            if "'" in value or "\n" in value:
                raise ValueError(f"{name} cannot be written to an env file as it is")
            handle.write(f"{name}='{value}'\n")


def _emulator_admin(base_url: str, path: str, payload: dict[str, Any]) -> Any:
    return emulator_call(base_url, path, payload, timeout=600)


def _wait_for_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback only)
                return
        except Exception:  # noqa: BLE001 (not up yet)
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def prepare_demo(
    *,
    emulator_url: str,
    data_dir: Path,
    console_port: int,
    webhook_port: int,
    customers: int,
    echo: Callable[[str], None] = print,
) -> DemoEnvironment:
    """Seed the emulator, migrate the DB, register the webhook endpoint and write credentials."""
    from services.schema import upgrade_and_seed
    from services.stripe_gateway import StripeGateway

    data_dir.mkdir(parents=True, exist_ok=True)
    database = data_dir / "billing_ops.db"
    for stale in data_dir.glob("billing_ops.db*"):
        stale.unlink()
    echo(f"Seeding a month of billing for {customers} customers in the emulator ...")
    seeded = _emulator_admin(emulator_url, "seed", {"customers": customers, "seed": 42})
    webhook_url = f"http://127.0.0.1:{webhook_port}/billing/webhook"
    credentials = data_dir / "credentials.yaml"
    write_credentials_file(credentials, DEMO_USERS)
    env = {
        "DATABASE_URL": f"sqlite:///{database}",
        "STRIPE_API_KEY": DEMO_API_KEY,
        "STRIPE_API_BASE": emulator_url,
        "STRIPE_MODE": "test",
        "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(seeded["prices"]),
        "ADMIN_EMAIL_DOMAIN": "example.com",
        "ADMIN_EMAILS": "ops@example.com",
        "SIGNOFF_ENG_LEADS": "eng.lead@example.com",
        "SIGNOFF_PRODUCT_OWNERS": "product.owner@example.com",
        "CONSOLE_WEBHOOK_URL": webhook_url,
        "WEBHOOK_PROCESS_INLINE": "true",
        "AUTH_CREDENTIALS_FILE": str(credentials),
        "RECONCILE_CRON_ENABLED": "true",
        # The guided smoke test buys the cheapest plan the seeded account sells.
        "STRIPE_SMOKE_TEST_PRICE": seeded["prices"]["basic"]["monthly"],
        # A fresh key per demo, as a deployment keeps its own outside the DB.
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(32),
    }
    settings = load_settings(env, env_file=None)
    upgrade_and_seed(settings.database_url)
    gateway = StripeGateway(settings)
    endpoint = gateway.create_webhook_endpoint(
        {"url": webhook_url, "enabled_events": list(CONSOLE_EVENT_TYPES), "description": "Billing Ops Console"},
        idempotency_key=f"demo-endpoint:{webhook_url}:{secrets.token_hex(4)}",
    )
    env["STRIPE_WEBHOOK_SECRETS"] = str(endpoint["secret"])
    write_env_file(data_dir / DEMO_ENV_FILE, env)
    return DemoEnvironment(
        env=env,
        console_url=f"http://127.0.0.1:{console_port}",
        webhook_url=webhook_url,
        emulator_url=emulator_url,
    )


def start_webhook_receiver(env: Mapping[str, str], port: int) -> threading.Thread:
    import uvicorn

    from services.runtime import Runtime, set_runtime
    from webhooks.app import create_app
    from webhooks.server import uvicorn_options

    runtime = Runtime(load_settings(env, env_file=None))
    set_runtime(runtime)
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options(runtime.settings)))
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    _wait_for_http(f"http://127.0.0.1:{port}/healthz")
    return thread


def backfill(env: Mapping[str, str], echo: Callable[[str], None]) -> dict[str, Any]:
    from services.runtime import Runtime
    from services.sync import run_sync

    runtime = Runtime(load_settings(env, env_file=None))
    summary: dict[str, Any] = run_sync(runtime, since=None, days=30, progress=echo)
    return summary


def start_console(*, port: int, env: Mapping[str, str], headless: bool = True) -> subprocess.Popen[bytes]:
    """Start the console (console_server.py: Streamlit's st.App serving app.py plus the
    /auth/session and /auth/sign-out routes that set the session cookie) with these settings."""
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "console_server.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true" if headless else "false",
    ]
    return subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env})


def run_console(*, port: int, env: Mapping[str, str], wait: bool) -> int:
    """`billing-ops run`: the console in the foreground; returns Streamlit's exit code."""
    process = start_console(port=port, env=env)
    if not wait:
        return 0
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM (a supervisor, a test fixture) stops the console and worker too, like Ctrl-C."""
    raise KeyboardInterrupt


def run_demo(
    *,
    console_port: int,
    webhook_port: int,
    emulator_port: int,
    data_dir: str,
    customers: int,
    headless: bool,
    echo: Callable[[str], None] = print,
) -> None:
    from emulator.server import EmulatorServer

    signal.signal(signal.SIGTERM, _interrupt)
    emulator = EmulatorServer(host="127.0.0.1", port=emulator_port, rate_limit_per_second=25)
    emulator.start()
    echo(f"Stripe emulator on {emulator.base_url}")
    demo = prepare_demo(
        emulator_url=emulator.base_url,
        data_dir=Path(data_dir).resolve(),
        console_port=console_port,
        webhook_port=webhook_port,
        customers=customers,
        echo=echo,
    )
    start_webhook_receiver(demo.env, webhook_port)
    echo(f"Webhook receiver on {demo.webhook_url}")
    summary = backfill(demo.env, echo)
    echo(f"Backfilled the billing DB from the emulator: {json.dumps(summary, default=str)}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"], cwd=REPO_ROOT, env={**os.environ, **demo.env}
    )
    console = start_console(port=console_port, env=demo.env, headless=headless)
    _wait_for_http(f"{demo.console_url}/_stcore/health", timeout=90)
    echo("")
    echo(f"Billing Ops Console is ready: {demo.console_url}")
    echo("Sign in as ops@example.com / demo-ops (admin; also eng.lead@example.com / demo-eng and")
    echo("product.owner@example.com / demo-po for sign-off; viewer@outside.io / demo-viewer has no access).")
    env_file = Path(data_dir).resolve() / DEMO_ENV_FILE
    echo(f"Its settings are in {env_file} (mode 0600); run any command against this demo with")
    echo(f"  billing-ops --env-file {env_file} reconcile   (or check, sync, qa run, snapshot ...)")
    echo("DEMO READY")
    try:
        console.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in (console, worker):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        emulator.stop()
