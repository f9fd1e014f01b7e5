"""The go-live preflight: every box in both runbooks that a machine can tick.

Each check has an id, a severity (`blocking` stops the launch, `warning` does
not), whether it passed, a plain-words message and the fix. Messages never
contain a secret: a key is shown as its mode prefix only (e.g. ``sk_test_…``).
Checks that need Stripe go through the gateway; if Stripe cannot be reached
they fail with the gateway's plain message instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from services.config import CONSOLE_EVENT_TYPES, REQUIRED_PLAN_INTERVALS, stripe_key_mode
from services.stripe_gateway import PINNED_API_VERSION, StripeGatewayError

Severity = Literal["blocking", "warning"]

# Stripe's recurring.interval for each interval name used in the price mapping.
STRIPE_INTERVAL = {"monthly": "month", "yearly": "year"}
# A key's mode prefix ("sk_test_"), the only part of a key that may be shown.
KEY_PREFIX_LENGTH = 8


@dataclass(frozen=True)
class CheckResult:
    id: str
    severity: Severity
    passed: bool
    message: str
    fix: str = ""

    @property
    def blocking_failure(self) -> bool:
        return self.severity == "blocking" and not self.passed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_hint(key: str | None) -> str:
    """What may be shown of a secret key: its mode prefix, never the rest."""
    if not key:
        return "(none)"
    return key[:KEY_PREFIX_LENGTH] + "…"


def _ok(check_id: str, message: str, severity: Severity = "blocking") -> CheckResult:
    return CheckResult(check_id, severity, True, message, "")


def _fail(check_id: str, message: str, fix: str, severity: Severity = "blocking") -> CheckResult:
    return CheckResult(check_id, severity, False, message, fix)


# --- settings-only checks ----------------------------------------------------------
def check_stripe_key(settings: Any) -> CheckResult:
    key = settings.stripe_secret
    if not key:
        return _fail("stripe.key", "No Stripe secret key is set.",
                     f"Set STRIPE_API_KEY to your {settings.stripe_mode}-mode secret key "
                     f"(sk_{settings.stripe_mode}_…).")
    mode = stripe_key_mode(key)
    if mode != settings.stripe_mode:
        return _fail("stripe.key", f"STRIPE_MODE is {settings.stripe_mode} but the key is {key_hint(key)}.",
                     "Use a key whose prefix matches STRIPE_MODE, or change STRIPE_MODE.")
    return _ok("stripe.key", f"Key {key_hint(key)} matches STRIPE_MODE={settings.stripe_mode}.")


def check_webhook_secrets(settings: Any) -> CheckResult:
    count = len(settings.webhook_secret_values)
    if count == 0:
        return _fail("webhook.secrets", "No webhook signing secret is set, so every delivery would be rejected.",
                     "Copy the endpoint's signing secret (whsec_…) into STRIPE_WEBHOOK_SECRETS "
                     "(comma-separate old and new during rotation).")
    return _ok("webhook.secrets", f"{count} webhook signing secret(s) configured.")


def check_admin_access(settings: Any) -> CheckResult:
    if not settings.admin_emails and not settings.admin_email_domain:
        return _fail("auth.admins", "Neither ADMIN_EMAILS nor ADMIN_EMAIL_DOMAIN is set: nobody can use the console.",
                     "Set ADMIN_EMAILS=a@company.com,b@company.com or ADMIN_EMAIL_DOMAIN=company.com.")
    parts = []
    if settings.admin_emails:
        parts.append(f"{len(settings.admin_emails)} admin email(s)")
    if settings.admin_email_domain:
        parts.append(f"domain {settings.admin_email_domain}")
    return _ok("auth.admins", "Admin access is set: " + " and ".join(parts) + ".")


def check_auth_enabled(settings: Any) -> CheckResult:
    if settings.disable_auth:
        return _fail("auth.enabled", "DISABLE_AUTH is true: anyone reaching the console is signed in as an admin.",
                     "Unset DISABLE_AUTH (or set it to false) and restart the console.")
    return _ok("auth.enabled", "Sign-in is required (DISABLE_AUTH is not set).")


def check_reconcile_cron(settings: Any) -> CheckResult:
    interval = settings.reconcile_cron_interval_seconds
    lookahead = settings.reconcile_cron_lookahead_seconds
    if lookahead <= interval:
        return _fail("reconcile.cron",
                     f"The reconcile lookahead ({lookahead} s) is not longer than its interval ({interval} s), "
                     "so a downgrade due between two runs could be missed.",
                     "Set RECONCILE_CRON_LOOKAHEAD_SECONDS above RECONCILE_CRON_INTERVAL_SECONDS "
                     "(runbook: 900 and 420).")
    if not settings.reconcile_cron_enabled:
        # Scheduled downgrades are only applied by the cron; in live mode that is a launch blocker.
        severity: Severity = "blocking" if settings.stripe_mode == "live" else "warning"
        return _fail("reconcile.cron", "RECONCILE_CRON_ENABLED is off: scheduled downgrades will not be applied.",
                     "Set RECONCILE_CRON_ENABLED=true on the worker and restart it.", severity)
    return _ok("reconcile.cron", f"Reconciliation runs every {interval} s looking {lookahead} s ahead.")


def check_sentry(settings: Any) -> CheckResult:
    if not settings.sentry_dsn:
        return _fail("observability.sentry", "SENTRY_DSN is not set: errors and alerts will not reach Sentry.",
                     "Set SENTRY_DSN to the project's DSN.", "warning")
    return _ok("observability.sentry", "Sentry DSN is set.", "warning")


def check_signoff_roles(settings: Any) -> CheckResult:
    missing = [name for name, people in (("SIGNOFF_ENG_LEADS", settings.signoff_eng_leads),
                                         ("SIGNOFF_PRODUCT_OWNERS", settings.signoff_product_owners)) if not people]
    if missing:
        return _fail("signoff.roles", f"{' and '.join(missing)} not set: nobody can sign the launch off.",
                     "Set SIGNOFF_ENG_LEADS and SIGNOFF_PRODUCT_OWNERS to the signers' emails.", "warning")
    return _ok("signoff.roles", "Sign-off roles are named.", "warning")


def check_api_version() -> CheckResult:
    return _ok("stripe.api_version", f"Stripe API version pinned by the SDK: {PINNED_API_VERSION}.", "warning")


def check_database(settings: Any) -> CheckResult:
    from db.migrate import is_at_head

    try:
        at_head = is_at_head(settings.database_url)
    except Exception as error:  # an unreachable DB is a failed check, not a crash
        return _fail("db.migrated", f"The billing database could not be read ({error.__class__.__name__}).",
                     "Check DATABASE_URL and that the database is reachable, then run `billing-ops db upgrade`.")
    if not at_head:
        return _fail("db.migrated", "The billing database is not migrated to the latest revision.",
                     "Run `billing-ops db upgrade`.")
    return _ok("db.migrated", "The billing database is at the latest migration.")


# --- Stripe checks ------------------------------------------------------------------
def check_stripe_reachable(gateway: Any, settings: Any) -> CheckResult:
    try:
        gateway.ping()
    except StripeGatewayError as error:
        return _fail("stripe.reachable", f"Stripe did not accept key {key_hint(settings.stripe_secret)}: "
                     f"{error.message}", "Check the key is current (not rolled) and that Stripe is reachable.")
    return _ok("stripe.reachable", f"Stripe answered with key {key_hint(settings.stripe_secret)}.")


def check_required_plans(settings: Any) -> CheckResult:
    missing = [f"{plan}.{interval}" for plan, interval in REQUIRED_PLAN_INTERVALS
               if not settings.price_id(plan, interval)]
    if missing:
        return _fail("prices.required", f"Required plans are not mapped to a price: {', '.join(missing)}.",
                     f"Add them to STRIPE_PLAN_PRICE_MAPPING_{settings.stripe_mode.upper()} "
                     "(or STRIPE_PRICE_<PLAN>_<INTERVAL>).")
    return _ok("prices.required", "basic.monthly and pro.monthly are mapped.")


def check_prices(gateway: Any, settings: Any) -> list[CheckResult]:
    results: list[CheckResult] = []
    live = settings.stripe_mode == "live"
    for plan, intervals in sorted(settings.price_mapping.items()):
        for interval, price_id in sorted(intervals.items()):
            check_id = f"price.{plan}.{interval}"
            try:
                price = gateway.retrieve_price(price_id)
            except StripeGatewayError as error:
                results.append(_fail(check_id, f"{plan}.{interval} → {price_id}: {error.message}",
                                     f"Create the price in Stripe {settings.stripe_mode} mode or fix the mapping."))
                continue
            problems = []
            if not price.get("active", False):
                problems.append("it is archived (inactive)")
            recurring = price.get("recurring") or {}
            if not recurring:
                problems.append("it is not a recurring price")
            elif recurring.get("interval") != STRIPE_INTERVAL.get(interval):
                problems.append(f"it bills every {recurring.get('interval')}, not every {STRIPE_INTERVAL[interval]}")
            if bool(price.get("livemode", False)) != live:
                problems.append(f"it is a {'live' if price.get('livemode') else 'test'}-mode price")
            if problems:
                results.append(_fail(check_id, f"{plan}.{interval} → {price_id}: " + "; ".join(problems) + ".",
                                     f"Map {plan}.{interval} to an active recurring {STRIPE_INTERVAL[interval]}ly "
                                     f"price in {settings.stripe_mode} mode."))
            else:
                amount = price.get("unit_amount")
                shown = f"{amount} {str(price.get('currency', '')).upper()}" if amount is not None else "metered"
                results.append(_ok(check_id, f"{plan}.{interval} → {price_id}: active, every "
                                   f"{recurring.get('interval')}, {shown}."))
    return results


def required_events(settings: Any) -> list[str]:
    return sorted(set(CONSOLE_EVENT_TYPES) | set(settings.stripe_webhook_allowed_events))


def check_webhook_endpoints(gateway: Any, settings: Any) -> list[CheckResult]:
    url = settings.console_webhook_url
    if not url:
        return [_fail("webhook.endpoint", "CONSOLE_WEBHOOK_URL is not set, so the endpoint cannot be checked.",
                      "Set CONSOLE_WEBHOOK_URL to the public https URL of /billing/webhook.")]
    try:
        endpoints = gateway.list_webhook_endpoints()
    except StripeGatewayError as error:
        return [_fail("webhook.endpoint", f"Could not list webhook endpoints: {error.message}",
                      "Check the key can read webhook endpoints.")]
    matching = [e for e in endpoints if str(e.get("url", "")).rstrip("/") == url.rstrip("/")]
    results: list[CheckResult] = []
    if not matching:
        results.append(_fail("webhook.endpoint", f"No webhook endpoint in Stripe delivers to {url}.",
                             f"Create one in the Dashboard (Developers → Webhooks) for {url} with the console's "
                             "events, and add its signing secret to STRIPE_WEBHOOK_SECRETS."))
    else:
        enabled = [e for e in matching if e.get("status", "enabled") == "enabled"]
        if not enabled:
            results.append(_fail("webhook.endpoint", f"The endpoint for {url} is disabled.",
                                 "Enable it in the Dashboard (Developers → Webhooks)."))
        else:
            endpoint = enabled[0]
            subscribed = set(endpoint.get("enabled_events") or [])
            missing = [] if "*" in subscribed else [t for t in required_events(settings) if t not in subscribed]
            if missing:
                results.append(_fail("webhook.events",
                                     f"Endpoint {endpoint.get('id')} is not subscribed to: {', '.join(missing)}.",
                                     "Add these events to the endpoint in the Dashboard, then run "
                                     f"`billing-ops prune-webhooks --url {url}` to confirm."))
            else:
                results.append(_ok("webhook.endpoint", f"Endpoint {endpoint.get('id')} delivers to {url} and is "
                                   "enabled."))
                results.append(_ok("webhook.events", f"Subscribed to all {len(required_events(settings))} events "
                                   "the console needs."))
    if len(matching) > 1:
        ids = ", ".join(str(e.get("id")) for e in matching)
        results.append(_fail("webhook.duplicates", f"{len(matching)} endpoints deliver to {url} ({ids}): every "
                             "event would arrive more than once.",
                             f"Run `billing-ops prune-webhooks --url {url}` (dry-run), then add --apply."))
    else:
        results.append(_ok("webhook.duplicates", f"No duplicate endpoints for {url}."))
    return results


def _enabled(feature: Any) -> bool:
    value = (feature or {}).get("enabled")
    return value is True or value == "true"


def check_portal(gateway: Any, settings: Any) -> CheckResult:
    try:
        configurations = gateway.list_portal_configurations()
    except StripeGatewayError as error:
        return _fail("portal.configured", f"Could not read billing portal configurations: {error.message}",
                     "Check the key can read billing portal settings.")
    active = [c for c in configurations if c.get("active", True)]
    if not active:
        return _fail("portal.configured", "No active customer portal configuration exists.",
                     "Configure the portal in the Dashboard (Settings → Billing → Customer portal).")
    configuration = next((c for c in active if c.get("is_default")), active[0])
    features = configuration.get("features") or {}
    problems = []
    update = features.get("subscription_update") or {}
    if not _enabled(update):
        problems.append("plan switching is off")
    else:
        offered = {price for product in update.get("products") or [] for price in product.get("prices") or []}
        needed = {settings.price_id(plan, interval) for plan, interval in REQUIRED_PLAN_INTERVALS}
        missing = sorted(p for p in needed if p and p not in offered)
        if missing and offered:
            problems.append(f"plan switching does not offer {', '.join(missing)}")
    for feature, words in (("payment_method_update", "card updates are off"),
                           ("invoice_history", "invoice history is off"),
                           ("subscription_cancel", "cancellation is off")):
        if not _enabled(features.get(feature)):
            problems.append(words)
    if problems:
        return _fail("portal.configured", f"Portal configuration {configuration.get('id')}: " + "; ".join(problems)
                     + ".", "In the Dashboard's customer portal settings enable plan switching (with the mapped "
                     "prices), payment method updates, invoices and cancellation.")
    return _ok("portal.configured", f"Portal configuration {configuration.get('id')} allows plan switches, card "
               "updates, invoices and cancellation.")


def run_preflight(runtime: Any) -> list[CheckResult]:
    """Every check, in the runbooks' order. Never raises for a Stripe problem."""
    settings = runtime.settings
    results: list[CheckResult] = [check_stripe_key(settings)]
    reachable = check_stripe_reachable(runtime.gateway, settings) if settings.stripe_secret else _fail(
        "stripe.reachable", "Stripe was not contacted: no key.", "Set STRIPE_API_KEY first.")
    results.append(reachable)
    results.append(check_required_plans(settings))
    stripe_checks: list[Callable[[], list[CheckResult]]] = [
        lambda: check_prices(runtime.gateway, settings),
        lambda: check_webhook_endpoints(runtime.gateway, settings),
        lambda: [check_portal(runtime.gateway, settings)],
    ]
    if reachable.passed:
        for stripe_check in stripe_checks:
            results.extend(stripe_check())
    else:
        for check_id in ("prices.stripe", "webhook.endpoint", "portal.configured"):
            results.append(_fail(check_id, "Not checked: Stripe is not reachable with this key.",
                                 "Fix the stripe.reachable check first."))
    results.append(check_webhook_secrets(settings))
    results.extend([
        check_admin_access(settings),
        check_auth_enabled(settings),
        check_database(settings),
        check_reconcile_cron(settings),
        check_sentry(settings),
        check_signoff_roles(settings),
        check_api_version(),
    ])
    return results


def has_blocking_failure(results: list[CheckResult]) -> bool:
    return any(result.blocking_failure for result in results)


def blocking_failures(results: list[CheckResult]) -> list[CheckResult]:
    return [result for result in results if result.blocking_failure]


def status_word(result: CheckResult) -> str:
    if result.passed:
        return "PASS"
    return "FAIL" if result.severity == "blocking" else "WARN"


def format_report(results: list[CheckResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"{status_word(result):4}  {result.id:22} {result.message}")
        if not result.passed and result.fix:
            lines.append(f"{'':28}fix: {result.fix}")
    failures = blocking_failures(results)
    warnings = [r for r in results if not r.passed and r.severity == "warning"]
    if failures:
        lines.append(f"\nNOT READY: {len(failures)} blocking failure(s) "
                     f"({', '.join(r.id for r in failures)}), {len(warnings)} warning(s).")
    else:
        lines.append(f"\nREADY: no blocking failures, {len(warnings)} warning(s).")
    return "\n".join(lines)
