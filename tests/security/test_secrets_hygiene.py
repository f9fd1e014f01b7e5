"""Canary secrets (Stripe key, webhook secrets, Sentry DSN, the database password) never
appear in logs, pages, CLI output, exception messages, stored errors or Sentry events, on
the happy paths and the error paths (Stripe errors, a crashing handler, bad settings)."""

from __future__ import annotations

import io
import json
import logging
import time
import traceback
from collections.abc import Iterator
from typing import Any, cast

import pytest
import sentry_sdk
from click.testing import CliRunner
from sentry_sdk.transport import Transport

from app_pages.registry import ADMIN_SECTIONS
from cli import main
from db.models import StripeEvent
from services import event_handlers, observability, webhooks
from services.runtime import set_runtime
from services.sync import run_sync
from tests.conftest import TEST_API_KEY, TEST_WEBHOOK_SECRETS, EmulatorHandle, app_test_for, page_text

logger = logging.getLogger("billing_ops.canary")

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


# --- the database password --------------------------------------------------------------
# PostgreSQL at 127.0.0.1 uses trust auth, so it ignores this password and still connects.
DB_CANARY = "CANARYdbpass-9c41e7d2"
DB_CANARIES = [DB_CANARY, *CANARIES]


def assert_no_db_password(label: str, text: str) -> None:
    checked["texts"] += 1
    for canary in DB_CANARIES:
        assert canary not in text, f"{label} leaks a secret ({canary[:10]}…)"


def _events(transport: CapturingTransport) -> list[dict[str, Any]]:
    """The event payloads inside the captured envelopes (one JSON document per line)."""
    events = []
    for envelope in transport.envelopes:
        for line in envelope.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "event_id" in item and ("exception" in item or "message" in item
                                                                  or "logentry" in item):
                events.append(item)
    return events


def _reconcile_against_the_database(settings: Any, engine: Any, runtime: Any) -> None:
    """Code holding the settings, engine and runtime as locals, failing the careless way."""
    from sqlalchemy import text

    raw_url = engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    raise RuntimeError(f"reconcile failed on {raw_url} (password {engine.url.password})")


@pytest.fixture
def pg_canary_runtime(runtime_factory: Any, postgres_url: str) -> Any:
    url = postgres_url.replace("postgresql+psycopg://postgres@", f"postgresql+psycopg://postgres:{DB_CANARY}@")
    assert DB_CANARY in url
    return runtime_factory(DATABASE_URL=url, SENTRY_DSN=SENTRY_DSN)


@pytest.fixture
def configured_logs(pg_canary_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What configure_logging(settings=...) (as the CLI calls it) writes to stderr."""
    root = logging.getLogger()
    earlier = [h for h in root.handlers if isinstance(h.formatter, observability.ScrubbingFormatter)]
    for handler in earlier:
        root.removeHandler(handler)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    previous = root.level
    observability.configure_logging(logging.DEBUG, settings=pg_canary_runtime.settings)
    ours = [h for h in root.handlers if isinstance(h.formatter, observability.ScrubbingFormatter)]
    yield stream
    for handler in ours:
        root.removeHandler(handler)
    for handler in earlier:
        root.addHandler(handler)
    root.setLevel(previous)


def test_database_password_never_reaches_sentry_logs_repr_or_cli(
        pg_canary_runtime: Any, configured_logs: io.StringIO, emulator: EmulatorHandle) -> None:
    runtime = pg_canary_runtime
    settings = runtime.settings
    assert DB_CANARY in settings.database_url
    with runtime.engine.connect():  # the canary URL really connects
        pass
    raw_url = runtime.engine.url.render_as_string(hide_password=False)
    assert DB_CANARY in raw_url

    # repr/str of everything that holds the URL.
    for label, value in (("repr(settings)", repr(settings)), ("str(settings)", str(settings)),
                         ("repr(runtime)", repr(runtime)), ("repr(engine)", repr(runtime.engine)),
                         ("str(engine.url)", str(runtime.engine.url))):
        assert_no_db_password(label, value)

    # Sentry as the app starts it, with a transport that keeps the envelopes.
    transport = CapturingTransport()
    try:
        assert observability.init_sentry(settings, transport=transport)
        logger.info("connecting to %s", raw_url)  # a breadcrumb
        sentry_sdk.add_breadcrumb(category="db", message=f"pool for {raw_url}", data={"url": raw_url})
        try:
            _reconcile_against_the_database(settings, runtime.engine, runtime)
        except RuntimeError:
            logger.exception("reconcile crashed with %r", settings)  # logged and sent as an event
            sentry_sdk.capture_exception()
        with sentry_sdk.new_scope() as scope:
            scope.set_extra("settings", settings)
            scope.set_extra("database_url", settings.database_url)
            scope.set_context("db", {"url": raw_url, "password": DB_CANARY})
            sentry_sdk.capture_message(f"bare password {DB_CANARY} in a message")
        sentry_sdk.capture_event({"message": "a request", "level": "error",
                                  "request": {"url": "https://console.example.io/x", "method": "POST",
                                              "data": {"dsn": raw_url, "note": DB_CANARY}}})
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # back to a disabled client
    events = _events(transport)
    # The logged exception and capture_exception are one event (the SDK dedupes them).
    assert len(events) >= 3, f"expected the exception, message and request events, got {len(events)}"
    assert any(e.get("request", {}).get("data") for e in events), "the request event is missing"
    crashed = [e for e in events if "exception" in e]
    assert crashed, "the exception was not captured"
    frames = [f for e in crashed for v in e["exception"]["values"] for f in v.get("stacktrace", {}).get("frames", [])]
    assert any(f.get("function") == "_reconcile_against_the_database" for f in frames)
    assert not any("vars" in f for f in frames), "frame locals are sent"
    assert any(e.get("breadcrumbs", {}).get("values") for e in events), "no breadcrumbs were captured"
    for envelope in transport.envelopes:
        checked["sentry_events"] += 1
        assert_no_db_password("Sentry envelope", envelope)

    # Logs.
    logged = configured_logs.getvalue()
    assert "reconcile crashed" in logged and "connecting to postgresql+psycopg://postgres:***@" in logged
    assert_no_db_password("log output", logged)

    # CLI output, good and bad settings, with the canary URL in the environment.
    env = {"DATABASE_URL": settings.database_url, "STRIPE_API_KEY": TEST_API_KEY,
           "STRIPE_API_BASE": emulator.base_url, "STRIPE_WEBHOOK_SECRETS": ",".join(TEST_WEBHOOK_SECRETS),
           "STRIPE_RATE_LIMIT_PER_SECOND": "1000", "ADMIN_EMAIL_DOMAIN": "example.com"}
    runner = CliRunner()
    for command in (["db", "upgrade"], ["reconcile", "--json"], ["check"]):
        result = runner.invoke(main, command, env=env)
        assert_no_db_password(f"billing-ops {' '.join(command)}", result.output + repr(result.exception))
    for bad_env in ({"SENTRY_DSN": f"postgresql://x:{DB_CANARY}@h/1"}, {"STRIPE_MODE": "live"},
                    {"DATABASE_URL": f"mysql://root:{DB_CANARY}@h/db"}):
        bad = runner.invoke(main, ["reconcile"], env={**env, **bad_env})
        assert bad.exit_code == 2, bad.output
        assert bad.output.startswith("Configuration error: ") and bad.output.strip().count("\n") == 0
        assert "Traceback" not in bad.output
        assert_no_db_password("CLI error output", bad.output)

    # A database that cannot be reached: whatever the command prints (a traceback too) has no password.
    unreachable = settings.database_url.replace("127.0.0.1:5432", "127.0.0.1:9")
    failed = runner.invoke(main, ["reconcile"], env={**env, "DATABASE_URL": unreachable})
    assert failed.exit_code != 0
    shown = failed.output + "".join(traceback.format_exception(*failed.exc_info)) if failed.exc_info else failed.output
    assert_no_db_password("CLI output with the database down", shown)

    # The Go-live page (it reads the settings and the DB); the CLI runs installed their own runtimes.
    set_runtime(runtime)
    at = app_test_for("golive", "admin")
    assert not at.exception
    assert_no_db_password("page golive", page_text(at))


def test_scrubber_alone_covers_frame_locals(pg_canary_runtime: Any) -> None:
    """Defence in depth: even with frame locals switched on, make_before_send(settings)
    leaves no database password (the engine URL's and the raw string's) in the event."""
    runtime = pg_canary_runtime
    transport = CapturingTransport()
    try:
        sentry_sdk.init(dsn=SENTRY_DSN, transport=transport, include_local_variables=True,
                        before_send=cast(Any, observability.make_before_send(runtime.settings)),
                        default_integrations=False)
        try:
            _reconcile_against_the_database(runtime.settings, runtime.engine, runtime)
        except RuntimeError:
            sentry_sdk.capture_exception()
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()
    events = _events(transport)
    assert events
    frames = [f for e in events for v in e["exception"]["values"] for f in v.get("stacktrace", {}).get("frames", [])]
    local_vars = [f["vars"] for f in frames if f.get("function") == "_reconcile_against_the_database"]
    assert local_vars and "raw_url" in local_vars[0], "the test needs frame locals to mean anything"
    assert "postgresql+psycopg://postgres:" in local_vars[0]["raw_url"]
    for envelope in transport.envelopes:
        assert_no_db_password("Sentry envelope with locals", envelope)


def test_malformed_sentry_dsn_is_one_line_for_every_entry_point() -> None:
    runner = CliRunner()
    for command in (["reconcile"], ["check"], ["sync", "--days", "1"], ["snapshot"], ["db", "upgrade"],
                    ["serve-webhooks"], ["worker", "--once"], ["run"], ["qa", "run"]):
        result = runner.invoke(main, command, env={"SENTRY_DSN": "https//not-a-dsn"})
        assert result.exit_code == 2, (command, result.output)
        assert result.output.strip() == ("Configuration error: SENTRY_DSN: not a valid Sentry DSN; fix: use the DSN "
                                         "from Sentry's project settings, like "
                                         "https://<public key>@o0.ingest.sentry.io/<project id>")
