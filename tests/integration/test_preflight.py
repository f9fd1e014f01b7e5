"""The preflight on a stand-in gateway: a correct set-up is ready; each
misconfiguration fails the right check, blocking or warning, with its fix, and
no secret appears anywhere in the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.preflight import format_report, has_blocking_failure, key_hint, run_preflight
from services.runtime import Runtime
from tests.integration.golive_fixtures import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    FakePreflightGateway,
    golive_settings,
)


def _runtime(url: str, gateway: FakePreflightGateway | None = None, **overrides: str | None) -> Runtime:
    runtime = Runtime(golive_settings(url, **overrides))
    runtime.__dict__["gateway"] = gateway or FakePreflightGateway()  # the cached_property's slot
    return runtime


def _by_id(results: list[Any]) -> dict[str, Any]:
    return {r.id: r for r in results}


def _assert_no_secret(results: list[Any]) -> None:
    text = format_report(results) + repr([r.to_dict() for r in results])
    assert SECRET_KEY not in text and SECRET_KEY[8:] not in text
    assert WEBHOOK_SECRET not in text and "SECRETCANARY" not in text


def test_correct_setup_is_ready(migrated_url: str) -> None:
    results = run_preflight(_runtime(migrated_url))
    assert not has_blocking_failure(results), format_report(results)
    checks = _by_id(results)
    for check_id in ("stripe.key", "stripe.reachable", "prices.required", "price.basic.monthly", "price.pro.monthly",
                     "webhook.secrets", "webhook.endpoint", "webhook.events", "webhook.duplicates",
                     "portal.configured", "auth.admins", "auth.enabled", "db.migrated", "reconcile.cron",
                     "observability.sentry", "stripe.api_version"):
        assert checks[check_id].passed, check_id
    assert "sk_test_…" in checks["stripe.key"].message
    assert "READY" in format_report(results)
    _assert_no_secret(results)


def test_unmigrated_database_blocks(database_url: str) -> None:
    results = run_preflight(_runtime(database_url))
    check = _by_id(results)["db.migrated"]
    assert not check.passed and check.severity == "blocking"
    assert "billing-ops db upgrade" in check.fix


def _drop_price(g: FakePreflightGateway) -> None:
    del g.prices["price_pro_monthly"]


def _archive_price(g: FakePreflightGateway) -> None:
    g.prices["price_basic_monthly"]["active"] = False


def _yearly_price(g: FakePreflightGateway) -> None:
    g.prices["price_basic_monthly"]["recurring"] = {"interval": "year"}


def _live_price(g: FakePreflightGateway) -> None:
    g.prices["price_pro_monthly"]["livemode"] = True


def _no_endpoint(g: FakePreflightGateway) -> None:
    g.endpoints = [{"id": "we_other", "url": "https://old.example.com/hook", "status": "enabled",
                    "enabled_events": ["*"]}]


def _disabled_endpoint(g: FakePreflightGateway) -> None:
    g.endpoints[0]["status"] = "disabled"


def _missing_events(g: FakePreflightGateway) -> None:
    g.endpoints[0]["enabled_events"] = ["invoice.paid", "customer.subscription.updated"]


def _duplicate_endpoint(g: FakePreflightGateway) -> None:
    g.endpoints.append(dict(g.endpoints[0], id="we_2"))


def _no_portal(g: FakePreflightGateway) -> None:
    g.portal = []


def _portal_no_switching(g: FakePreflightGateway) -> None:
    g.portal[0]["features"]["subscription_update"] = {"enabled": False}


def _unreachable(g: FakePreflightGateway) -> None:
    g.reachable = False


GATEWAY_BREAKS: list[tuple[Callable[[FakePreflightGateway], None], str, str]] = [
    (_drop_price, "price.pro.monthly", "Create the price"),
    (_archive_price, "price.basic.monthly", "active recurring"),
    (_yearly_price, "price.basic.monthly", "active recurring"),
    (_live_price, "price.pro.monthly", "test mode"),
    (_no_endpoint, "webhook.endpoint", WEBHOOK_URL),
    (_disabled_endpoint, "webhook.endpoint", "Enable it"),
    (_missing_events, "webhook.events", "prune-webhooks"),
    (_duplicate_endpoint, "webhook.duplicates", "billing-ops prune-webhooks"),
    (_no_portal, "portal.configured", "Customer portal"),
    (_portal_no_switching, "portal.configured", "plan switching"),
    (_unreachable, "stripe.reachable", "key is current"),
]


@pytest.mark.parametrize(("break_it", "check_id", "fix_words"), GATEWAY_BREAKS,
                         ids=[b[0].__name__.strip("_") for b in GATEWAY_BREAKS])
def test_stripe_side_misconfiguration_blocks(
    migrated_sqlite_url: str, break_it: Callable[[FakePreflightGateway], None], check_id: str, fix_words: str
) -> None:
    gateway = FakePreflightGateway()
    break_it(gateway)
    results = run_preflight(_runtime(migrated_sqlite_url, gateway))
    check = _by_id(results)[check_id]
    assert not check.passed and check.severity == "blocking"
    assert fix_words in check.fix
    assert has_blocking_failure(results)
    assert f"fix: {check.fix}" in format_report(results)
    _assert_no_secret(results)


SETTINGS_BREAKS: list[tuple[dict[str, str | None], str, str, str]] = [
    ({"STRIPE_API_KEY": None}, "stripe.key", "blocking", "STRIPE_API_KEY"),
    ({"STRIPE_PRICE_PRO_MONTHLY": None}, "prices.required", "blocking", "STRIPE_PLAN_PRICE_MAPPING_TEST"),
    ({"STRIPE_WEBHOOK_SECRETS": None}, "webhook.secrets", "blocking", "STRIPE_WEBHOOK_SECRETS"),
    ({"ADMIN_EMAILS": None, "ADMIN_EMAIL_DOMAIN": None}, "auth.admins", "blocking", "ADMIN_EMAILS"),
    ({"DISABLE_AUTH": "true"}, "auth.enabled", "blocking", "DISABLE_AUTH"),
    ({"CONSOLE_WEBHOOK_URL": None}, "webhook.endpoint", "blocking", "CONSOLE_WEBHOOK_URL"),
    ({"RECONCILE_CRON_LOOKAHEAD_SECONDS": "300"}, "reconcile.cron", "blocking", "LOOKAHEAD"),
    ({"RECONCILE_CRON_ENABLED": "false"}, "reconcile.cron", "warning", "RECONCILE_CRON_ENABLED=true"),
    ({"SENTRY_DSN": None}, "observability.sentry", "warning", "SENTRY_DSN"),
    ({"SIGNOFF_ENG_LEADS": None}, "signoff.roles", "warning", "SIGNOFF_ENG_LEADS"),
]


@pytest.mark.parametrize(("overrides", "check_id", "severity", "fix_words"), SETTINGS_BREAKS,
                         ids=[b[1] + ":" + ",".join(b[0]) for b in SETTINGS_BREAKS])
def test_settings_misconfiguration(
    migrated_sqlite_url: str, overrides: dict[str, str | None], check_id: str, severity: str, fix_words: str
) -> None:
    results = run_preflight(_runtime(migrated_sqlite_url, None, **overrides))
    check = _by_id(results)[check_id]
    assert not check.passed and check.severity == severity
    assert fix_words in check.fix
    assert has_blocking_failure(results) is (severity == "blocking")
    _assert_no_secret(results)


def test_cron_off_blocks_in_live_mode(migrated_sqlite_url: str) -> None:
    gateway = FakePreflightGateway()
    for price in gateway.prices.values():
        price["livemode"] = True
    results = run_preflight(_runtime(migrated_sqlite_url, gateway, STRIPE_API_KEY="sk_live_SECRETCANARY0123456789ab",
                                     STRIPE_MODE="live", RECONCILE_CRON_ENABLED="false"))
    checks = _by_id(results)
    assert checks["reconcile.cron"].severity == "blocking" and not checks["reconcile.cron"].passed
    assert checks["price.pro.monthly"].passed  # live prices are right in live mode
    assert "sk_live_…" in checks["stripe.key"].message
    assert "SECRETCANARY" not in format_report(results)


def test_key_hint_shows_the_mode_prefix_only() -> None:
    assert key_hint("sk_test_abcdef123") == "sk_test_…"
    assert key_hint("rk_live_abcdef123") == "rk_live_…"
    assert key_hint(None) == "(none)"


def _live_gateway() -> FakePreflightGateway:
    gateway = FakePreflightGateway()
    for price in gateway.prices.values():
        price["livemode"] = True
    for endpoint in gateway.endpoints:
        endpoint["livemode"] = True
    return gateway


LIVE = {"STRIPE_API_KEY": "sk_live_SECRETCANARY0123456789ab", "STRIPE_MODE": "live",
        "STRIPE_PUBLISHABLE_KEY": "pk_live_publishable0123456789", "STRIPE_AUTOMATIC_TAX_ENABLED": "true",
        "STRIPE_WALLETS_ENABLED": "true"}


def test_live_setup_with_live_identifiers_passes_the_new_checks(migrated_sqlite_url: str) -> None:
    checks = _by_id(run_preflight(_runtime(migrated_sqlite_url, _live_gateway(), **LIVE), explicit_run=False))
    for check_id in ("stripe.publishable_key", "stripe.tax", "wallets.domain", "config.mode_identifiers",
                     "webhook.url", "webhook.events", "auth.lookalikes"):
        assert checks[check_id].passed, (check_id, checks[check_id].message)


def _pending_tax(g: FakePreflightGateway) -> None:
    g.tax.update(status="pending", head_office=None, status_details={"pending": {"missing_fields": ["head_office"]}})


def _apple_pay_inactive(g: FakePreflightGateway) -> None:
    g.domains[0]["apple_pay"] = {"status": "inactive", "status_details": {"error_message": "not verified"}}


def _no_domain(g: FakePreflightGateway) -> None:
    g.domains = []


def _extra_events(g: FakePreflightGateway) -> None:
    g.endpoints[0]["enabled_events"].append("customer.created")


def _test_endpoint(g: FakePreflightGateway) -> None:
    g.endpoints[0]["livemode"] = False


LIVE_BREAKS: list[tuple[Callable[[FakePreflightGateway], None], dict[str, str | None], str, str]] = [
    (_pending_tax, {}, "stripe.tax", "head_office"),
    (_apple_pay_inactive, {}, "wallets.domain", "Apple Pay is inactive (not verified)"),
    (_no_domain, {}, "wallets.domain", "not registered"),
    (_extra_events, {}, "webhook.events", "customer.created"),
    (_test_endpoint, {}, "config.mode_identifiers", "livemode false"),
    (lambda g: None, {"STRIPE_PUBLISHABLE_KEY": None}, "stripe.publishable_key", "not set"),
    (lambda g: None, {"STRIPE_PUBLISHABLE_KEY": "pk_test_x0123456789"}, "config.mode_identifiers", "pk_test_…"),
    (lambda g: None, {"CONSOLE_WEBHOOK_URL": "http://billing.example.com/billing/webhook"}, "webhook.url",
     "not https"),
]


@pytest.mark.parametrize(("break_it", "overrides", "check_id", "words"), LIVE_BREAKS,
                         ids=[f"{b[2]}:{i}" for i, b in enumerate(LIVE_BREAKS)])
def test_new_checks_block_in_live_mode(migrated_sqlite_url: str, break_it: Callable[[FakePreflightGateway], None],
                                       overrides: dict[str, str | None], check_id: str, words: str) -> None:
    gateway = _live_gateway()
    break_it(gateway)
    if "CONSOLE_WEBHOOK_URL" in overrides:
        gateway.endpoints[0]["url"] = overrides["CONSOLE_WEBHOOK_URL"]
    results = run_preflight(_runtime(migrated_sqlite_url, gateway, **{**LIVE, **overrides}), explicit_run=False)
    check = _by_id(results)[check_id]
    assert not check.passed and check.severity == "blocking", check
    assert words in check.message
    assert has_blocking_failure(results)
    _assert_no_secret(results)
