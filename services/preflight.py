"""The go-live preflight: every box in both runbooks that a machine can tick.

Each check has an id, a severity (`blocking` stops the launch, `warning` does
not), whether it passed, a plain-words message and the fix. Messages never
contain a secret: a key is shown as its mode prefix only (e.g. ``sk_test_…``).
Checks that need Stripe go through the gateway; if Stripe cannot be reached
they fail with the gateway's plain message instead of raising.

`run_preflight` runs them in the runbooks' order; the checks live in
services/preflight_settings.py (no Stripe call) and services/preflight_stripe.py,
the result and report vocabulary in services/preflight_result.py (re-exported here,
since every caller of run_preflight reads its results).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from services.preflight_result import (
    CheckResult,
    blocking_failures,
    failed_check,
    format_report,
    has_blocking_failure,
    key_hint,
    status_word,
)
from services.preflight_settings import (
    check_admin_access,
    check_admin_lookalikes,
    check_api_version,
    check_audit_chain,
    check_auth_enabled,
    check_checklist_complete,
    check_checkout_rate_limit,
    check_database,
    check_metrics,
    check_publishable_key,
    check_reconcile_cron,
    check_repo_secrets,
    check_required_plans,
    check_sentry,
    check_sentry_test_event,
    check_signoff_roles,
    check_stripe_key,
    check_webhook_secrets,
    check_webhook_url,
)
from services.preflight_stripe import (
    check_mode_identifiers,
    check_portal,
    check_prices,
    check_stripe_reachable,
    check_tax,
    check_wallets,
    check_webhook_endpoints,
)
from services.runtime import Runtime
from services.stripe_gateway import StripeGatewayError


def run_preflight(runtime: Runtime, *, repo: str | None = None, explicit_run: bool = False,
                  run_id: str | None = None) -> list[CheckResult]:
    """Every check, in the runbooks' order. Never raises for a Stripe problem.

    The Sentry test event and the checkout burst are sent only by an explicit preflight run
    (`check`, the Go-live page), not by readers such as sign-off that re-run the checks."""
    settings = runtime.settings
    run_id = run_id or secrets.token_hex(6)
    results: list[CheckResult] = [check_stripe_key(settings), check_publishable_key(settings)]
    reachable = check_stripe_reachable(runtime.gateway, settings) if settings.stripe_secret else failed_check(
        "stripe.reachable", "Stripe was not contacted: no key.", "Set STRIPE_API_KEY first.")
    results.append(reachable)
    results.append(check_required_plans(settings))
    results.append(check_webhook_url(settings))
    endpoints: list[dict[str, Any]] | None = None

    def webhook_checks() -> list[CheckResult]:
        nonlocal endpoints
        try:
            endpoints = runtime.gateway.list_webhook_endpoints()
        except StripeGatewayError:
            endpoints = None
        return check_webhook_endpoints(runtime.gateway, settings, endpoints)

    stripe_checks: list[Callable[[], list[CheckResult]]] = [
        lambda: check_prices(runtime.gateway, settings),
        webhook_checks,
        lambda: [check_mode_identifiers(runtime.gateway, settings, endpoints)],
        lambda: [check_portal(runtime.gateway, settings)],
        lambda: [check_tax(runtime.gateway, settings)],
        lambda: [check_wallets(runtime.gateway, settings)],
    ]
    if reachable.passed:
        for stripe_check in stripe_checks:
            results.extend(stripe_check())
    else:
        for check_id in ("prices.stripe", "webhook.endpoint", "config.mode_identifiers", "portal.configured",
                         "stripe.tax", "wallets.domain"):
            results.append(failed_check(check_id, "Not checked: Stripe is not reachable with this key.",
                                        "Fix the stripe.reachable check first."))
    results.append(check_webhook_secrets(settings))
    results.append(check_repo_secrets(repo or settings.deployment_repo_path))
    results.extend([
        check_admin_access(settings),
        check_admin_lookalikes(settings),
        check_auth_enabled(settings),
        check_database(settings),
        check_reconcile_cron(settings),
        check_metrics(settings),
        check_sentry(settings),
    ])
    if settings.sentry_dsn and explicit_run:
        results.append(check_sentry_test_event(settings, run_id))
    if settings.checkout_probe_url and explicit_run:
        results.append(check_checkout_rate_limit(settings))
    results.extend([check_audit_chain(runtime), check_signoff_roles(settings), check_checklist_complete(runtime),
                    check_api_version()])
    return results


__all__ = ["CheckResult", "blocking_failures", "format_report", "has_blocking_failure", "key_hint", "run_preflight",
           "status_word"]
