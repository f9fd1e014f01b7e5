"""Canary secrets (Stripe key, webhook secrets, Sentry DSN) never appear in logs, pages,
CLI output, exception messages, stored errors or Sentry events, on the happy paths and
the error paths (Stripe errors, a crashing handler, bad settings)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from click.testing import CliRunner
from sentry_sdk.transport import Transport

from app_pages.registry import ADMIN_SECTIONS
from cli import main
from db.models import StripeEvent
from services import event_handlers, observability, webhooks
from services.sync import run_sync
from tests.conftest import TEST_API_KEY, TEST_WEBHOOK_SECRETS, EmulatorHandle, app_test_for, page_text

SENTRY_KEY = "c0ffee00c0ffee00c0ffee00c0ffee00"
# Loopback only: a client without the test transport must never send anywhere real.
SENTRY_DSN = f"http://{SENTRY_KEY}@127.0.0.1:9/42"
CANARIES = [TEST_API_KEY, *TEST_WEBHOOK_SECRETS, SENTRY_KEY, "CANARY"]
PAGES = [path.rsplit("/", 1)[-1].removesuffix(".py") for pages in ADMIN_SECTIONS.values() for path, _t, _s in pages]
checked = {"texts": 0, "sentry_events": 0}


class CapturingTransport(Transport):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.envelopes: list[str] = []

    def capture_envelope(self, envelope: Any) -> None:
        buffer = io.BytesIO()
        envelope.serialize_into(buffer)
        self.envelopes.append(buffer.getvalue().decode("utf-8", "replace"))


def assert_clean(label: str, text: str) -> None:
    checked["texts"] += 1
    for canary in CANARIES:
        assert canary not in text, f"{label} leaks a secret ({canary[:10]}…)"


@pytest.fixture
def canary_runtime(runtime_factory: Any, emulator: EmulatorHandle) -> Any:
    seeded = emulator.admin("seed", {"customers": 12, "seed": 5})
    runtime = runtime_factory(SENTRY_DSN=SENTRY_DSN, STRIPE_PLAN_PRICE_MAPPING_TEST=json.dumps(seeded["prices"]),
                              CONSOLE_WEBHOOK_URL="https://billing.example.io/billing/webhook")
    run_sync(runtime, since=None, days=30)
    return runtime


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """What our configured log handler actually writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.ScrubbingFormatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(observability.ScrubbingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
def sentry_transport(canary_runtime: Any) -> Iterator[CapturingTransport]:
    """A transport the test installs (after the CLI runs, which initialise Sentry themselves)."""
    yield CapturingTransport()
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # back to a disabled client


def test_no_secret_anywhere(canary_runtime: Any, emulator: EmulatorHandle, captured_logs: io.StringIO,
                            sentry_transport: CapturingTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = canary_runtime
    # Every page, as an admin.
    for page in PAGES:
        at = app_test_for(page, "admin")
        assert_clean(f"page {page}", page_text(at) + repr([e.value for e in at.exception]))
        for element in list(at.get("code")) + list(at.get("json")):
            assert_clean(f"page {page} code/json", str(getattr(element, "value", "")))

    # Every CLI command, with the canaries in its environment.
    env = {"DATABASE_URL": runtime.settings.database_url, "STRIPE_API_KEY": TEST_API_KEY,
           "STRIPE_API_BASE": emulator.base_url, "STRIPE_WEBHOOK_SECRETS": ",".join(TEST_WEBHOOK_SECRETS),
           "SENTRY_DSN": SENTRY_DSN, "ADMIN_EMAIL_DOMAIN": "example.com",
           "STRIPE_RATE_LIMIT_PER_SECOND": "1000", "CONSOLE_WEBHOOK_URL": "https://billing.example.io/billing/webhook"}
    runner = CliRunner()
    commands = [["db", "upgrade"], ["check"], ["check", "--json"], ["reconcile"], ["reconcile", "--json"],
                ["sync", "--days", "1"], ["prune-webhooks", "--url", "https://billing.example.io/billing/webhook"],
                ["qa", "run", "--case", "new_subscription"], ["--help"]]
    for command in commands:
        result = runner.invoke(main, command, env=env)
        assert_clean(f"billing-ops {' '.join(command)}", result.output + repr(result.exception))
    bad = runner.invoke(main, ["check"], env={**env, "STRIPE_MODE": "live"})
    assert bad.exit_code == 2
    assert_clean("bad settings", bad.output)

    # Stripe errors: a 500 storm and a rejected key.
    emulator.admin("faults", {"rate_500": 1.0})
    # (mapped, so the run reaches Stripe instead of being refused for missing configuration)
    mapped = {**env, "STRIPE_PRICE_BASIC_MONTHLY": "price_basic", "STRIPE_PRICE_PRO_MONTHLY": "price_pro"}
    failing = runner.invoke(main, ["reconcile"], env=mapped)
    assert "Stripe error" in failing.output
    emulator.admin("faults", {"rate_500": 0.0})
    assert_clean("reconcile during a Stripe outage", failing.output + repr(failing.exception))
    rejected = runner.invoke(main, ["check"], env={**env, "STRIPE_API_KEY": "sk_test_CANARYrejected",
                                                   "STRIPE_API_BASE": "http://127.0.0.1:9"})
    assert_clean("check with an unreachable Stripe", rejected.output)

    # A crashing handler whose exception text carries secrets, with Sentry capturing.
    assert observability.init_sentry(runtime.settings, transport=sentry_transport)
    def crash(uow: Any, event: Any, rt: Any, refetch: bool) -> None:
        raise RuntimeError(f"boom with {TEST_API_KEY} and {TEST_WEBHOOK_SECRETS[0]}")

    monkeypatch.setitem(event_handlers.HANDLERS, "charge.refunded", crash)
    event = {"id": "evt_canary", "type": "charge.refunded", "created": int(time.time()),
             "data": {"object": {"id": "ch_canary", "object": "charge"}}}
    webhooks.ingest_event(runtime, event, process=True)
    with runtime.uow() as uow:
        stored = uow.session.get(StripeEvent, "evt_canary")
        assert stored is not None and stored.status == "failed"
        assert_clean("stored handler error", stored.last_error or "")
    try:
        raise RuntimeError(f"unexpected failure near {TEST_API_KEY} {SENTRY_DSN}")
    except RuntimeError:
        sentry_sdk.capture_exception()
    observability.capture_alert(f"alert mentioning {TEST_WEBHOOK_SECRETS[1]}", {"alert": "test"})
    sentry_sdk.flush()
    assert sentry_transport.envelopes, "Sentry captured nothing"
    for envelope in sentry_transport.envelopes:
        checked["sentry_events"] += 1
        assert_clean("Sentry event", envelope)
    assert_clean("log output", captured_logs.getvalue())
    print(f"\nsecrets hygiene: {len(CANARIES)} canaries checked across {checked['texts']} outputs "
          f"and {checked['sentry_events']} Sentry events")
