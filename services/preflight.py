"""The go-live preflight: every box in both runbooks that a machine can tick.

Each check has an id, a severity (`blocking` stops the launch, `warning` does
not), whether it passed, a plain-words message and the fix. Messages never
contain a secret: a key is shown as its mode prefix only (e.g. ``sk_test_…``).
Checks that need Stripe go through the gateway; if Stripe cannot be reached
they fail with the gateway's plain message instead of raising.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.admin_lookalikes import admitted_lookalikes, lookalike_identities
from services.config import (
    CONSOLE_EVENT_TYPES,
    REQUIRED_PLAN_INTERVALS,
    Settings,
    publishable_key_mode,
    stripe_key_mode,
)
from services.money import format_money
from services.runtime import Runtime
from services.secret_scan import SecretScanError, scan_repository
from services.sentry_probe import TEST_EVENT_TAG, send_test_event
from services.stripe_gateway import PINNED_API_VERSION, StripeGatewayError

Severity = Literal["blocking", "warning"]

# Stripe's recurring.interval for each interval name used in the price mapping.
STRIPE_INTERVAL = {"monthly": "month", "yearly": "year"}
# A key's mode prefix ("sk_test_"), the only part of a key that may be shown.
KEY_PREFIX_LENGTH = 8
# The receiver's paths (webhooks/app.py WEBHOOK_PATHS): the runbook's and ALwrity's alias.
CONSOLE_WEBHOOK_PATHS = ("/billing/webhook", "/api/subscription/webhook")
# Wallets whose domain state the runbook asks about (Numzy section 11).
WALLETS = (("apple_pay", "Apple Pay"), ("google_pay", "Google Pay"))
# A metric our receiver always exposes: proves /metrics is ours and not a proxy's page.
RECEIVER_METRIC = "stripe_webhook_deliveries"
METRICS_TIMEOUT_SECONDS = 5.0


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


def _database_missing(runtime: Runtime) -> bool:
    from db.session import missing_sqlite_file

    return missing_sqlite_file(runtime.settings.database_url) is not None


def _live_blocking(settings: Settings) -> Severity:
    """A runbook precondition: blocks a live launch, only warns while testing."""
    return "blocking" if settings.stripe_mode == "live" else "warning"


# --- settings-only checks ----------------------------------------------------------
def check_stripe_key(settings: Settings) -> CheckResult:
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


def check_webhook_secrets(settings: Settings) -> CheckResult:
    count = len(settings.webhook_secret_values)
    if count == 0:
        return _fail("webhook.secrets", "No webhook signing secret is set, so every delivery would be rejected.",
                     "Copy the endpoint's signing secret (whsec_…) into STRIPE_WEBHOOK_SECRETS "
                     "(comma-separate old and new during rotation).")
    return _ok("webhook.secrets", f"{count} webhook signing secret(s) configured.")


def check_admin_access(settings: Settings) -> CheckResult:
    if not settings.admin_emails and not settings.admin_email_domain:
        return _fail("auth.admins", "Neither ADMIN_EMAILS nor ADMIN_EMAIL_DOMAIN is set: nobody can use the console.",
                     "Set ADMIN_EMAILS=a@company.com,b@company.com or ADMIN_EMAIL_DOMAIN=company.com.")
    parts = []
    if settings.admin_emails:
        parts.append(f"{len(settings.admin_emails)} admin email(s)")
    if settings.admin_email_domain:
        parts.append(f"domain {settings.admin_email_domain}")
    return _ok("auth.admins", "Admin access is set: " + " and ".join(parts) + ".")


def check_auth_enabled(settings: Settings) -> CheckResult:
    if settings.disable_auth:
        return _fail("auth.enabled", "DISABLE_AUTH is true: anyone reaching the console is signed in as an admin.",
                     "Unset DISABLE_AUTH (or set it to false) and restart the console.")
    return _ok("auth.enabled", "Sign-in is required (DISABLE_AUTH is not set).")


def check_reconcile_cron(settings: Settings) -> CheckResult:
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


def check_sentry(settings: Settings) -> CheckResult:
    if not settings.sentry_dsn:
        return _fail("observability.sentry", "SENTRY_DSN is not set: errors and alerts will not reach Sentry.",
                     "Set SENTRY_DSN to the project's DSN.", "warning")
    return _ok("observability.sentry", "Sentry DSN is set.", "warning")


def check_audit_chain(runtime: Runtime) -> CheckResult:
    """The audit log verifies (links, keyed hashes, anchored heads) and is keyed in live mode."""
    from services.audit import verify_chain

    settings = runtime.settings
    if _database_missing(runtime):
        return _fail("audit.chain", "The audit log was not read: the billing database does not exist.",
                     "Fix db.migrated first.", "warning")
    try:
        verification = verify_chain(runtime.uow())
    except Exception as error:  # an unmigrated DB is reported by db.migrated; this one just says why
        return _fail("audit.chain", f"The audit log could not be read ({error.__class__.__name__}).",
                     "Fix db.migrated first.", "warning")
    if not verification.ok:
        return _fail("audit.chain", f"The audit chain does not verify at row {verification.first_broken_id}: "
                     f"{verification.problem}.", "Investigate on the Audit page before launch; restore the "
                     "audit_log table from a backup if rows were removed.")
    if not settings.audit_hmac_key:
        return _fail("audit.chain", f"The audit chain verifies ({verification.rows_checked} rows) but is not keyed: "
                     "someone with DB access could re-hash it.", "Set AUDIT_HMAC_KEY (32+ random bytes, kept "
                     "outside the DB) before the first audited action.", _live_blocking(settings))
    return _ok("audit.chain", f"The audit chain verifies: {verification.rows_checked} rows keyed with "
               f"AUDIT_HMAC_KEY, {verification.anchors_checked} anchored head(s) in place.")


def check_signoff_roles(settings: Settings) -> CheckResult:
    missing = [name for name, people in (("SIGNOFF_ENG_LEADS", settings.signoff_eng_leads),
                                         ("SIGNOFF_PRODUCT_OWNERS", settings.signoff_product_owners)) if not people]
    if missing:
        return _fail("signoff.roles", f"{' and '.join(missing)} not set: nobody can sign the launch off.",
                     "Set SIGNOFF_ENG_LEADS and SIGNOFF_PRODUCT_OWNERS to the signers' emails.", "warning")
    return _ok("signoff.roles", "Sign-off roles are named.", "warning")


def check_api_version() -> CheckResult:
    return _ok("stripe.api_version", f"Stripe API version pinned by the SDK: {PINNED_API_VERSION}.", "warning")


def check_database(settings: Settings) -> CheckResult:
    from db.migrate import is_at_head
    from db.session import missing_sqlite_file

    missing = missing_sqlite_file(settings.database_url)
    if missing:
        return _fail("db.migrated", f"The billing database file {missing} does not exist.",
                     "Check DATABASE_URL, or run `billing-ops db upgrade` to create it.")
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
def check_stripe_reachable(gateway: Any, settings: Settings) -> CheckResult:
    try:
        gateway.ping()
    except StripeGatewayError as error:
        return _fail("stripe.reachable", f"Stripe did not accept key {key_hint(settings.stripe_secret)}: "
                     f"{error.message}", "Check the key is current (not rolled) and that Stripe is reachable.")
    return _ok("stripe.reachable", f"Stripe answered with key {key_hint(settings.stripe_secret)}.")


def check_required_plans(settings: Settings) -> CheckResult:
    missing = [f"{plan}.{interval}" for plan, interval in REQUIRED_PLAN_INTERVALS
               if not settings.price_id(plan, interval)]
    if missing:
        return _fail("prices.required", f"Required plans are not mapped to a price: {', '.join(missing)}.",
                     f"Add them to STRIPE_PLAN_PRICE_MAPPING_{settings.stripe_mode.upper()} "
                     "(or STRIPE_PRICE_<PLAN>_<INTERVAL>).")
    return _ok("prices.required", "basic.monthly and pro.monthly are mapped.")


def check_prices(gateway: Any, settings: Settings) -> list[CheckResult]:
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
                shown = (format_money(int(amount), str(price.get("currency") or "usd")) if amount is not None
                         else "metered")
                results.append(_ok(check_id, f"{plan}.{interval} → {price_id}: active, every "
                                   f"{recurring.get('interval')}, {shown}."))
    return results


def required_events(settings: Settings) -> list[str]:
    return sorted(set(CONSOLE_EVENT_TYPES) | set(settings.stripe_webhook_allowed_events))


def check_webhook_url(settings: Settings) -> CheckResult:
    """Numzy §3.1 / ALwrity §4: an https URL ending in the receiver's path."""
    url = settings.console_webhook_url
    if not url:
        return _fail("webhook.url", "CONSOLE_WEBHOOK_URL is not set.",
                     "Set CONSOLE_WEBHOOK_URL to the public https URL of /billing/webhook.")
    parts = urlsplit(url)
    problems = []
    if parts.scheme != "https":
        problems.append("it is not https")
    if not parts.path.rstrip("/").endswith(CONSOLE_WEBHOOK_PATHS):
        problems.append(f"its path {parts.path or '/'} is not {' or '.join(CONSOLE_WEBHOOK_PATHS)}")
    if problems:
        return _fail("webhook.url", f"The webhook URL {url} is wrong: " + "; ".join(problems) + ".",
                     "Point the endpoint (and CONSOLE_WEBHOOK_URL) at https://<your host>/billing/webhook.",
                     _live_blocking(settings))
    return _ok("webhook.url", f"The webhook URL {url} is https and ends in {parts.path.rstrip('/')}.")


def _events_result(endpoint: dict[str, Any], settings: Settings, url: str) -> CheckResult:
    """Numzy §3.4: the endpoint's events equal the allowlist; nothing missing, nothing extra."""
    subscribed = set(endpoint.get("enabled_events") or [])
    wanted = set(required_events(settings))
    missing = [] if "*" in subscribed else sorted(wanted - subscribed)
    extra = sorted(subscribed - wanted)
    prune = f"`billing-ops prune-webhooks --url {url}`"
    if missing:
        return _fail("webhook.events", f"Endpoint {endpoint.get('id')} is not subscribed to: {', '.join(missing)}"
                     + (f"; and has extra events: {', '.join(extra)}." if extra else "."),
                     f"Add these events to the endpoint in the Dashboard, then run {prune} to confirm.")
    if extra:
        return _fail("webhook.events", f"Endpoint {endpoint.get('id')} has events outside "
                     f"STRIPE_WEBHOOK_ALLOWED_EVENTS: {', '.join(extra)}.",
                     f"Remove them from the endpoint (or add them to STRIPE_WEBHOOK_ALLOWED_EVENTS); {prune} shows "
                     "the difference.", _live_blocking(settings))
    return _ok("webhook.events", f"Endpoint {endpoint.get('id')} is subscribed to exactly the {len(wanted)} allowed "
               "events.")


def check_webhook_endpoints(gateway: Any, settings: Settings,
                            listed: list[dict[str, Any]] | None = None) -> list[CheckResult]:
    url = settings.console_webhook_url
    if not url:
        return [_fail("webhook.endpoint", "CONSOLE_WEBHOOK_URL is not set, so the endpoint cannot be checked.",
                      "Set CONSOLE_WEBHOOK_URL to the public https URL of /billing/webhook.")]
    try:
        endpoints = listed if listed is not None else gateway.list_webhook_endpoints()
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
            events = _events_result(endpoint, settings, url)
            if events.passed or not events.blocking_failure:
                results.append(_ok("webhook.endpoint", f"Endpoint {endpoint.get('id')} delivers to {url} and is "
                                   "enabled."))
            results.append(events)
    if len(matching) > 1:
        ids = ", ".join(str(e.get("id")) for e in matching)
        results.append(_fail("webhook.duplicates", f"{len(matching)} endpoints deliver to {url} ({ids}): every "
                             "event would arrive more than once.",
                             f"Run `billing-ops prune-webhooks --url {url}` (dry-run), then add --apply."))
    else:
        results.append(_ok("webhook.duplicates", f"Exactly {len(matching)} endpoint delivers to {url}."
                           if matching else f"No duplicate endpoints for {url}."))
    return results


def _enabled(feature: Any) -> bool:
    value = (feature or {}).get("enabled")
    return value is True or value == "true"


def check_portal(gateway: Any, settings: Settings) -> CheckResult:
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


# --- checks added for the runbooks' remaining machine-checkable boxes -----------------
def check_publishable_key(settings: Settings) -> CheckResult:
    """Numzy §2: STRIPE_PUBLISHABLE_KEY present, same mode as the secret key."""
    key = settings.stripe_publishable_key
    if not key:
        return _fail("stripe.publishable_key", "STRIPE_PUBLISHABLE_KEY is not set: the browser cannot open "
                     "Checkout or Elements.", f"Set STRIPE_PUBLISHABLE_KEY to the pk_{settings.stripe_mode}_… key of "
                     "the same account.", _live_blocking(settings))
    mode = publishable_key_mode(key)
    if mode != settings.stripe_mode:
        return _fail("stripe.publishable_key", f"The publishable key is {key_hint(key)} but the secret key and "
                     f"STRIPE_MODE are {settings.stripe_mode} mode.",
                     f"Use the pk_{settings.stripe_mode}_… key from the same account and mode as the secret key.")
    return _ok("stripe.publishable_key", f"Publishable key {key_hint(key)} matches {settings.stripe_mode} mode.")


def check_tax(gateway: Any, settings: Settings) -> CheckResult:
    """Numzy §2/§10: with STRIPE_AUTOMATIC_TAX_ENABLED, Stripe Tax must be active (head office set)."""
    if not settings.stripe_automatic_tax_enabled:
        return _ok("stripe.tax", "STRIPE_AUTOMATIC_TAX_ENABLED is off: Stripe Tax is not used.", "warning")
    try:
        tax = gateway.retrieve_tax_settings()
    except StripeGatewayError as error:
        return _fail("stripe.tax", f"Could not read Stripe Tax settings: {error.message}",
                     "Check the key can read tax settings (Tax Settings: read).", _live_blocking(settings))
    status = tax.get("status")
    if status != "active":
        missing = ((tax.get("status_details") or {}).get("pending") or {}).get("missing_fields") or []
        detail = f" (missing: {', '.join(missing)})" if missing else ""
        return _fail("stripe.tax", f"STRIPE_AUTOMATIC_TAX_ENABLED=true but Stripe Tax is {status}{detail}: every "
                     "checkout and invoice with automatic tax would fail.",
                     "Set the head office address in Dashboard → Settings → Tax (or turn "
                     "STRIPE_AUTOMATIC_TAX_ENABLED off).", _live_blocking(settings))
    address = ((tax.get("head_office") or {}).get("address") or {})
    where = ", ".join(str(address[k]) for k in ("state", "country") if address.get(k))
    return _ok("stripe.tax", f"Stripe Tax is active (head office {where or 'set'}).")


def wallet_domain(settings: Settings) -> str | None:
    if settings.stripe_payment_method_domain:
        return str(settings.stripe_payment_method_domain).strip().lower()
    host = urlsplit(settings.console_webhook_url or "").hostname
    return host.lower() if host else None


def check_wallets(gateway: Any, settings: Settings) -> CheckResult:
    """Numzy §11: wallets at launch need the domain registered, enabled and active for each wallet."""
    if not settings.stripe_wallets_enabled:
        return _ok("wallets.domain", "STRIPE_WALLETS_ENABLED is off: no wallets at launch.", "warning")
    domain = wallet_domain(settings)
    severity = _live_blocking(settings)
    if not domain:
        return _fail("wallets.domain", "Wallets are on but no payment domain is known.",
                     "Set STRIPE_PAYMENT_METHOD_DOMAIN to the domain customers pay on.", severity)
    try:
        domains = gateway.list_payment_method_domains(domain_name=domain)
    except StripeGatewayError as error:
        return _fail("wallets.domain", f"Could not read payment method domains: {error.message}",
                     "Check the key can read payment method domains.", severity)
    found = next((d for d in domains if d.get("domain_name") == domain), None)
    if found is None:
        return _fail("wallets.domain", f"{domain} is not registered as a payment method domain, so Apple Pay and "
                     "Google Pay will not show.", f"Register {domain} in Dashboard → Settings → Payment method "
                     "domains, serving /.well-known/apple-developer-merchantid-domain-association.", severity)
    problems = [] if found.get("enabled") else ["the domain is disabled"]
    for field, name in WALLETS:
        state = found.get(field) or {}
        if state.get("status") != "active":
            reason = (state.get("status_details") or {}).get("error_message")
            problems.append(f"{name} is {state.get('status', 'unknown')}" + (f" ({reason})" if reason else ""))
    if problems:
        return _fail("wallets.domain", f"Payment method domain {found.get('id')} ({domain}): " + "; ".join(problems)
                     + ".", "Fix the domain in Dashboard → Settings → Payment method domains (serve the Apple Pay "
                     "association file, enable the domain), then press Validate.", severity)
    return _ok("wallets.domain", f"{domain} is registered, enabled and active for Apple Pay and Google Pay.")


def metrics_urls(settings: Settings) -> list[str]:
    if settings.metrics_urls:
        return list(settings.metrics_urls)
    parts = urlsplit(settings.console_webhook_url or "")
    return [f"{parts.scheme}://{parts.netloc}/metrics"] if parts.scheme and parts.netloc else []


def check_metrics(settings: Settings, fetch: Callable[[str], httpx.Response] | None = None) -> CheckResult:
    """Numzy §2 (DRAMATIQ_PROMETHEUS_ENABLED): our receiver's/worker's Prometheus /metrics is reachable."""
    if not settings.metrics_enabled:
        return _ok("metrics.reachable", "Prometheus metrics are off (METRICS_ENABLED / DRAMATIQ_PROMETHEUS_ENABLED).",
                   "warning")
    urls = metrics_urls(settings)
    if not urls:
        return _fail("metrics.reachable", "Metrics are on but no /metrics URL is known.",
                     "Set METRICS_URLS to the receivers' and workers' /metrics URLs.", "warning")
    get = fetch or (lambda url: httpx.get(url, timeout=METRICS_TIMEOUT_SECONDS, follow_redirects=False))
    problems = []
    for url in urls:
        try:
            response = get(url)
        except httpx.HTTPError as error:
            problems.append(f"{url}: not reachable ({error.__class__.__name__})")
            continue
        if response.status_code != 200:
            problems.append(f"{url}: HTTP {response.status_code}")
            continue
        try:
            names = {family.name for family in text_string_to_metric_families(response.text)}
        except ValueError:
            problems.append(f"{url}: not Prometheus text")
            continue
        if RECEIVER_METRIC not in names:
            problems.append(f"{url}: no {RECEIVER_METRIC} metric (not the console's receiver)")
    if problems:
        return _fail("metrics.reachable", "Metrics are not readable: " + "; ".join(problems) + ".",
                     "Run `billing-ops serve-webhooks` and make GET /metrics reachable from the scraper, or fix "
                     "METRICS_URLS.", "warning")
    return _ok("metrics.reachable", f"Prometheus metrics answer at {', '.join(urls)}.", "warning")


def check_checkout_rate_limit(settings: Settings, post: Callable[[str], int] | None = None) -> CheckResult:
    """ALwrity §7: a burst against the SaaS's create-checkout-session endpoint meets a 429."""
    from services.checkout_probe import probe

    url = settings.checkout_probe_url
    if settings.stripe_mode == "live":
        return _fail("checkout.rate_limit", "Not probed: the burst is never sent in live mode.",
                     "Run the probe against test or staging (CHECKOUT_PROBE_URL there).", "warning")
    if not url or not url.startswith(("http://", "https://")):
        return _fail("checkout.rate_limit", "CHECKOUT_PROBE_URL is not an http(s) URL.",
                     "Set it to the create-checkout-session URL of the test or staging SaaS.", "warning")
    result = probe(url, requests=settings.checkout_probe_requests, seconds=settings.checkout_probe_seconds,
                   post=post)
    seen = ", ".join(f"{count}× {status}" for status, count in sorted(result.statuses.items()))
    if result.limited_after is not None:
        return _ok("checkout.rate_limit", f"{url} answered 429 at request {result.limited_after} of a burst of "
                   f"{settings.checkout_probe_requests} in {settings.checkout_probe_seconds:g} s ({seen}).",
                   "warning")
    return _fail("checkout.rate_limit", f"{url} never answered 429: {result.sent} requests in {result.seconds:g} s "
                 f"({seen}).", "Rate-limit the create-checkout-session endpoint (and log each 429), then re-run "
                 "`billing-ops check`.", "warning")


def check_mode_identifiers(gateway: Any, settings: Settings, endpoints: list[dict[str, Any]] | None) -> CheckResult:
    """ALwrity §1/§2/§4/§9: no identifier of the other mode in this configuration."""
    mode = settings.stripe_mode
    live = mode == "live"
    wrong: list[str] = []
    publishable = settings.stripe_publishable_key
    if publishable and publishable_key_mode(publishable) not in (None, mode):
        wrong.append(f"publishable key {key_hint(publishable)}")
    for plan, intervals in sorted(settings.price_mapping.items()):
        for interval, price_id in sorted(intervals.items()):
            try:
                price = gateway.retrieve_price(price_id)
            except StripeGatewayError:
                continue  # reported by the price.* check
            if bool(price.get("livemode", False)) != live:
                reported = str(price.get("livemode")).lower()
                wrong.append(f"{plan}.{interval} price {price_id} (Stripe: livemode {reported})")
    url = (settings.console_webhook_url or "").rstrip("/")
    for endpoint in endpoints or []:
        if str(endpoint.get("url", "")).rstrip("/") == url and bool(endpoint.get("livemode", False)) != live:
            wrong.append(f"webhook endpoint {endpoint.get('id')} whose whsec_ secret this console holds "
                         f"(Stripe: livemode {str(endpoint.get('livemode')).lower()})")
    if wrong:
        other = "test" if live else "live"
        return _fail("config.mode_identifiers", f"{other.capitalize()}-mode identifiers in a {mode} configuration: "
                     + "; ".join(wrong) + ".", f"Replace them with their {mode}-mode counterparts "
                     f"(STRIPE_PLAN_PRICE_MAPPING_{mode.upper()}, STRIPE_PUBLISHABLE_KEY, the {mode} endpoint's "
                     "signing secret).", _live_blocking(settings))
    return _ok("config.mode_identifiers", f"Every key, price and endpoint checked is a {mode}-mode one.")


def check_repo_secrets(repo: str | None) -> CheckResult:
    """ALwrity §1: no Stripe keys committed, in the files or anywhere in the history."""
    if not repo:
        return _fail("secrets.repo", "The deployment repository was not scanned for committed Stripe secrets.",
                     "Run `billing-ops check --repo PATH` (or set DEPLOYMENT_REPO_PATH).", "warning")
    try:
        findings = scan_repository(repo)
    except SecretScanError as error:
        return _fail("secrets.repo", f"Could not scan {repo}: {error.message}",
                     "Point --repo at a readable checkout (with its .git directory).")
    if findings:
        shown = "; ".join(f.describe() for f in findings[:10])
        more = f" and {len(findings) - 10} more" if len(findings) > 10 else ""
        return _fail("secrets.repo", f"{len(findings)} Stripe secret(s) committed: {shown}{more}.",
                     "Roll every listed key and signing secret in the Dashboard now (history keeps them), move "
                     "them to the secret manager, then purge them from the history.")
    return _ok("secrets.repo", f"No sk_live_/rk_live_/whsec_ secret in {repo}'s files or git history.")


def check_sentry_test_event(settings: Settings, run_id: str) -> CheckResult:
    """Numzy §1: the Sentry project receives test events; a person confirms the event id arrived."""
    result = send_test_event(settings, run_id=run_id)
    if not result.delivered:
        return _fail("observability.sentry_test_event", f"The Sentry test event was not delivered "
                     f"({result.reason}).", "Check SENTRY_DSN and that this host can reach Sentry's ingest.",
                     "warning")
    return _ok("observability.sentry_test_event", f"Test event {result.event_id} sent (tag {TEST_EVENT_TAG}="
               f"test_event, run {run_id}); confirm it arrived in the Sentry project.", "warning")


def check_admin_lookalikes(settings: Settings) -> CheckResult:
    """ALwrity §5: no look-alike address (suffix, subdomain, extra @ ...) is let in as an admin."""
    admitted = admitted_lookalikes(settings)
    tried = len(lookalike_identities(settings))
    if admitted:
        return _fail("auth.lookalikes", f"{len(admitted)} of {tried} look-alike identities would be admitted: "
                     f"{', '.join(repr(a) for a in admitted)}.",
                     "Fix ADMIN_EMAILS / ADMIN_EMAIL_DOMAIN so only the exact addresses and domain match.")
    return _ok("auth.lookalikes", f"None of {tried} look-alike identities (subdomain, suffix, extra @, outsider) is "
               "admitted.")


def check_checklist_complete(runtime: Runtime) -> CheckResult:
    """Numzy §1: every pre-launch manual checklist item is done (or n/a)."""
    from services.checklist import PRE_LAUNCH_SECTIONS, SEED_ITEMS, list_items

    if _database_missing(runtime):
        return _fail("checklist.complete", "The checklist was not read: the billing database does not exist.",
                     "Fix db.migrated first.", "warning")
    try:
        items = {item["key"]: item for item in list_items(runtime.uow())}
    except Exception as error:  # an unmigrated DB is reported by db.migrated; this one just says why
        return _fail("checklist.complete", f"The checklist could not be read ({error.__class__.__name__}).",
                     "Fix db.migrated first.", "warning")
    open_titles = [seed.title for seed in SEED_ITEMS if seed.section in PRE_LAUNCH_SECTIONS
                   and (items.get(seed.key) or {}).get("status", "open") == "open"]
    if open_titles:
        shown = ", ".join(open_titles[:5]) + (f" and {len(open_titles) - 5} more" if len(open_titles) > 5 else "")
        return _fail("checklist.complete", f"{len(open_titles)} manual checklist item(s) still open: {shown}.",
                     "Work them on the Go-live page (mark each done or n/a with a note).", "warning")
    return _ok("checklist.complete", "Every pre-launch manual checklist item is done or n/a.", "warning")


def run_preflight(runtime: Runtime, *, repo: str | None = None, explicit_run: bool = False,
                  run_id: str | None = None) -> list[CheckResult]:
    """Every check, in the runbooks' order. Never raises for a Stripe problem.

    The Sentry test event and the checkout burst are sent only by an explicit preflight run
    (`check`, the Go-live page), not by readers such as sign-off that re-run the checks."""
    settings = runtime.settings
    run_id = run_id or secrets.token_hex(6)
    results: list[CheckResult] = [check_stripe_key(settings), check_publishable_key(settings)]
    reachable = check_stripe_reachable(runtime.gateway, settings) if settings.stripe_secret else _fail(
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
            results.append(_fail(check_id, "Not checked: Stripe is not reachable with this key.",
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
