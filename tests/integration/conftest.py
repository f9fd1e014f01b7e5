"""Fixtures shared by the preflight tests that run `billing-ops check` on the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.config import CONSOLE_EVENT_TYPES
from tests.conftest import emulator_env
from tests.integration.golive_fixtures import LocalHttp
from tests.integration.stripe_target import EMULATOR, REAL_STRIPE, StripeTarget, real_stripe_key

WEBHOOK_URL = "https://billing.example.com/billing/webhook"


@pytest.fixture
def sentry_ingest() -> Iterator[LocalHttp]:
    """A local Sentry ingest: the preflight's test event lands here, never on the network."""
    ingest = LocalHttp()
    yield ingest
    ingest.stop()


@pytest.fixture
def check_env(emulator: Any, sqlite_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
              sentry_ingest: LocalHttp) -> dict[str, str]:
    """A correct go-live set-up in the emulator: prices, portal, one endpoint, migrated DB."""
    from db.migrate import upgrade

    monkeypatch.chdir(tmp_path)  # no stray .env from the repo
    seeded = emulator.admin("seed", {"customers": 0})
    env = {
        **emulator_env(emulator, sqlite_url),
        "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(seeded["prices"]),
        "CONSOLE_WEBHOOK_URL": WEBHOOK_URL,
        "RECONCILE_CRON_ENABLED": "true",
        "SENTRY_DSN": sentry_ingest.dsn,
        "STRIPE_PUBLISHABLE_KEY": "pk_test_publishable0123456789",
        "STRIPE_MAX_RETRIES": "0",
    }
    upgrade(sqlite_url)
    create_endpoint(env, list(CONSOLE_EVENT_TYPES), "first")
    return env


def emulator_gateway(env: dict[str, str]) -> Any:
    from services.config import load_settings
    from services.stripe_gateway import StripeGateway

    return StripeGateway(load_settings(env, env_file=None))


def create_endpoint(env: dict[str, str], events: list[str], tag: str, url: str = WEBHOOK_URL) -> dict[str, Any]:
    return dict(emulator_gateway(env).create_webhook_endpoint({"url": url, "enabled_events": events},
                                                      idempotency_key=f"test-endpoint:{tag}"))




# --- one contract suite, two targets (tests/integration/stripe_target.py) ---------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking `stripe_target` runs on the emulator and on a real Stripe test-mode account,
    unless it is marked `emulator_only(reason=...)`: then on the emulator alone."""
    if "stripe_target" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("emulator_only")
    if only is not None and not (only.kwargs.get("reason") or only.args):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: emulator_only needs reason=... saying why")
    targets = [EMULATOR] if only is not None else [EMULATOR, REAL_STRIPE]
    metafunc.parametrize("stripe_target", targets, indirect=True, ids=targets)


@pytest.fixture
def stripe_target(request: pytest.FixtureRequest, emulator_server: Any) -> StripeTarget:
    """Where the test's SDK calls go. The emulator (reset for the test), or the real test-mode
    account named by STRIPE_TEST_API_KEY (skipped, with the reason, when it is not set)."""
    if request.param == EMULATOR:
        return StripeTarget(EMULATOR, base_url=request.getfixturevalue("emulator").base_url)
    key, why_not = real_stripe_key()
    if key is None:
        pytest.skip(why_not)
    return StripeTarget(REAL_STRIPE, api_key=key)


# --- the catalogue contract check over the emulator contract suite ----------------------------------
@pytest.fixture(autouse=True)
def _catalogue_audit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every object the emulator returns in an emulator contract test must match Stripe's catalogue."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    callspec = getattr(request.node, "callspec", None)
    on_real_stripe = callspec is not None and callspec.params.get("stripe_target") == REAL_STRIPE
    if not module.startswith("test_emulator_") or "emulator_server" not in request.fixturenames or on_real_stripe:
        yield
        return
    from tests.integration.catalogue_check import SESSION_AUDIT, ResponseAudit, attach, detach

    server = request.getfixturevalue("emulator_server")
    audit = ResponseAudit()
    attach(server, audit)
    attach(server, SESSION_AUDIT)
    try:
        yield
    finally:
        detach(server, audit)
        detach(server, SESSION_AUDIT)
    serious = audit.serious()
    assert not serious, f"{len(serious)} objects' fields differ from Stripe's catalogue:\n" + "\n".join(serious[:20])
    assert audit.report.percent >= 98.0, audit.summary()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.integration.catalogue_check import SESSION_AUDIT

    if SESSION_AUDIT.responses:
        terminalreporter.write_line(SESSION_AUDIT.summary())


def confirmed_payment(client: Any, card: str, amount: int) -> Any:
    """A new customer and a confirmed USD PaymentIntent of `amount` (minor units) paid with the
    test card `card` (a `pm_card_*` token), through a `stripe.StripeClient`."""
    customer = client.v1.customers.create({"email": "payer@example.com"})
    return client.v1.payment_intents.create({"amount": amount, "currency": "usd", "customer": customer.id,
                                             "payment_method": card, "confirm": True})
