"""`billing-ops check` run for real (click's CliRunner on cli.main, settings from
environment variables) against the Stripe emulator: a correct set-up exits 0;
each misconfiguration exits 1 naming the right check and its fix, and no
secret is ever printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from services.config import CONSOLE_EVENT_TYPES
from tests.conftest import TEST_API_KEY
from tests.integration.conftest import create_endpoint as _create_endpoint

# The emulator set-up (check_env, sentry_ingest) lives in tests/integration/conftest.py.


def _run_check(env: dict[str, str], *args: str) -> Any:
    from cli import main

    clean = {name: None for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "DISABLE_AUTH",
                                      "ADMIN_EMAIL_DOMAIN", "STRIPE_PRICE_PRO_MONTHLY")}
    result = CliRunner().invoke(main, ["check", *args], env={**clean, **env}, catch_exceptions=False)
    output = result.output
    assert TEST_API_KEY not in output and TEST_API_KEY[8:] not in output
    assert "CANARY" not in output, "a secret reached the output"
    return result


def test_correct_setup_exits_0(check_env: dict[str, str]) -> None:
    result = _run_check(check_env)
    assert result.exit_code == 0, result.output
    assert "READY" in result.output and "sk_test_…" in result.output
    as_json = _run_check(check_env, "--json")
    assert as_json.exit_code == 0
    report = json.loads(as_json.output)
    assert report["ready"] is True and report["recorded"] is True
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["webhook.endpoint"]["passed"] and checks["portal.configured"]["passed"]
    assert checks["price.pro.monthly"]["passed"] and checks["db.migrated"]["passed"]
    assert set(checks["stripe.key"]) == {"id", "severity", "passed", "message", "fix"}


def _env_change(**changes: str | None) -> Callable[[dict[str, str]], dict[str, str]]:
    def apply(env: dict[str, str]) -> dict[str, str]:
        changed = dict(env)
        for key, value in changes.items():
            if value is None:
                changed.pop(key, None)
            else:
                changed[key] = value
        return changed

    return apply


def _unmapped_pro(env: dict[str, str]) -> dict[str, str]:
    mapping = json.loads(env["STRIPE_PLAN_PRICE_MAPPING_TEST"])
    del mapping["pro"]
    return {**env, "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(mapping)}


def _missing_price(env: dict[str, str]) -> dict[str, str]:
    mapping = json.loads(env["STRIPE_PLAN_PRICE_MAPPING_TEST"])
    mapping["pro"]["monthly"] = "price_doesnotexist"
    return {**env, "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(mapping)}


def _swapped_interval(env: dict[str, str]) -> dict[str, str]:
    mapping = json.loads(env["STRIPE_PLAN_PRICE_MAPPING_TEST"])
    mapping["basic"]["monthly"] = mapping["basic"]["yearly"]
    return {**env, "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(mapping)}


def _duplicate_endpoint(env: dict[str, str]) -> dict[str, str]:
    _create_endpoint(env, list(CONSOLE_EVENT_TYPES), "duplicate")
    return env


def _narrow_endpoint(env: dict[str, str]) -> dict[str, str]:
    other = "https://billing.example.com/other-hook"
    _create_endpoint(env, ["invoice.paid"], "narrow", url=other)
    return {**env, "CONSOLE_WEBHOOK_URL": other}


def _unmigrated(env: dict[str, str]) -> dict[str, str]:
    return {**env, "DATABASE_URL": env["DATABASE_URL"].replace(".db", "-empty.db")}


MISCONFIGURATIONS: list[tuple[str, Callable[[dict[str, str]], dict[str, str]], str, str]] = [
    ("required plan unmapped", _unmapped_pro, "prices.required", "STRIPE_PLAN_PRICE_MAPPING_TEST"),
    ("price missing in Stripe", _missing_price, "price.pro.monthly", "Create the price"),
    ("monthly mapped to a yearly price", _swapped_interval, "price.basic.monthly", "recurring month"),
    ("no webhook secrets", _env_change(STRIPE_WEBHOOK_SECRETS=None), "webhook.secrets", "STRIPE_WEBHOOK_SECRETS"),
    ("no endpoint for the URL", _env_change(CONSOLE_WEBHOOK_URL="https://new.example.com/billing/webhook"),
     "webhook.endpoint", "Create one"),
    ("endpoint missing events", _narrow_endpoint, "webhook.events", "Add these events"),
    ("duplicate endpoints", _duplicate_endpoint, "webhook.duplicates", "billing-ops prune-webhooks"),
    ("no admins", _env_change(ADMIN_EMAILS=None), "auth.admins", "ADMIN_EMAIL_DOMAIN"),
    ("auth disabled", _env_change(DISABLE_AUTH="true"), "auth.enabled", "Unset DISABLE_AUTH"),
    ("DB not migrated", _unmigrated, "db.migrated", "billing-ops db upgrade"),
    ("cron lookahead too short", _env_change(RECONCILE_CRON_LOOKAHEAD_SECONDS="60"), "reconcile.cron",
     "RECONCILE_CRON_LOOKAHEAD_SECONDS"),
]


@pytest.mark.parametrize(("name", "misconfigure", "check_id", "fix_words"), MISCONFIGURATIONS,
                         ids=[m[0] for m in MISCONFIGURATIONS])
def test_misconfiguration_exits_1_naming_the_check(
    check_env: dict[str, str], name: str, misconfigure: Callable[[dict[str, str]], dict[str, str]], check_id: str,
    fix_words: str,
) -> None:
    result = _run_check(misconfigure(check_env))
    assert result.exit_code == 1, result.output
    failing = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert any(check_id in line for line in failing), result.output
    assert fix_words in result.output
    assert "NOT READY" in result.output and check_id in result.output.splitlines()[-1]
    as_json = _run_check(misconfigure(check_env), "--json")
    assert as_json.exit_code == 1
    failed = {c["id"]: c for c in json.loads(as_json.output)["checks"] if not c["passed"]}
    assert failed[check_id]["severity"] == "blocking" and fix_words in failed[check_id]["fix"]


def test_stripe_unreachable_exits_1(check_env: dict[str, str]) -> None:
    result = _run_check({**check_env, "STRIPE_API_BASE": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert "stripe.reachable" in result.output.splitlines()[-1]


def test_missing_sentry_is_only_a_warning(check_env: dict[str, str]) -> None:
    result = _run_check(_env_change(SENTRY_DSN=None)(check_env))
    assert result.exit_code == 0
    assert any(line.startswith("WARN") and "observability.sentry" in line for line in result.output.splitlines())
