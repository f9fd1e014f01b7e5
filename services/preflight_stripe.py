"""Preflight checks that ask Stripe (through the gateway): reachability, the mapped prices,
the webhook endpoint and its events, test/live identifiers, the customer portal, Tax and the
wallet domain. A Stripe problem fails the check with the gateway's plain message."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from services.config import (
    CONSOLE_EVENT_TYPES,
    REQUIRED_PLAN_INTERVALS,
    Settings,
    publishable_key_mode,
)
from services.money import format_money
from services.preflight_result import CheckResult, failed_check, key_hint, passed_check
from services.preflight_settings import live_blocking
from services.stripe_gateway import StripeGatewayError

# Stripe's recurring.interval for each interval name used in the price mapping.
STRIPE_INTERVAL = {"monthly": "month", "yearly": "year"}

# Wallets whose domain state the runbook asks about (Numzy section 11).
WALLETS = (("apple_pay", "Apple Pay"), ("google_pay", "Google Pay"))


def check_stripe_reachable(gateway: Any, settings: Settings) -> CheckResult:
    try:
        gateway.ping()
    except StripeGatewayError as error:
        return failed_check("stripe.reachable", f"Stripe did not accept key {key_hint(settings.stripe_secret)}: "
                            f"{error.message}", "Check the key is current (not rolled) and that Stripe is reachable.")
    return passed_check("stripe.reachable", f"Stripe answered with key {key_hint(settings.stripe_secret)}.")


def check_prices(gateway: Any, settings: Settings) -> list[CheckResult]:
    results: list[CheckResult] = []
    live = settings.stripe_mode == "live"
    for plan, intervals in sorted(settings.price_mapping.items()):
        for interval, price_id in sorted(intervals.items()):
            check_id = f"price.{plan}.{interval}"
            try:
                price = gateway.retrieve_price(price_id)
            except StripeGatewayError as error:
                results.append(failed_check(check_id, f"{plan}.{interval} → {price_id}: {error.message}",
                                            f"Create the price in Stripe {settings.stripe_mode} mode or fix the "
                                            f"mapping."))
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
                results.append(failed_check(check_id, f"{plan}.{interval} → {price_id}: " + "; ".join(problems) + ".",
                                            f"Map {plan}.{interval} to an active recurring "
                                            f"{STRIPE_INTERVAL[interval]}ly "
                                            f"price in {settings.stripe_mode} mode."))
            else:
                amount = price.get("unit_amount")
                shown = (format_money(int(amount), str(price.get("currency") or "usd")) if amount is not None
                         else "metered")
                results.append(passed_check(check_id, f"{plan}.{interval} → {price_id}: active, every "
                                            f"{recurring.get('interval')}, {shown}."))
    return results


def required_events(settings: Settings) -> list[str]:
    return sorted(set(CONSOLE_EVENT_TYPES) | set(settings.stripe_webhook_allowed_events))


def _events_result(endpoint: dict[str, Any], settings: Settings, url: str) -> CheckResult:
    """Numzy §3.4: the endpoint's events equal the allowlist; nothing missing, nothing extra."""
    subscribed = set(endpoint.get("enabled_events") or [])
    wanted = set(required_events(settings))
    missing = [] if "*" in subscribed else sorted(wanted - subscribed)
    extra = sorted(subscribed - wanted)
    prune = f"`billing-ops prune-webhooks --url {url}`"
    if missing:
        return failed_check("webhook.events", f"Endpoint {endpoint.get('id')} is not subscribed to: "
                            f"{', '.join(missing)}"
                            + (f"; and has extra events: {', '.join(extra)}." if extra else "."),
                            f"Add these events to the endpoint in the Dashboard, then run {prune} to confirm.")
    if extra:
        return failed_check("webhook.events", f"Endpoint {endpoint.get('id')} has events outside "
                            f"STRIPE_WEBHOOK_ALLOWED_EVENTS: {', '.join(extra)}.",
                            f"Remove them from the endpoint (or add them to STRIPE_WEBHOOK_ALLOWED_EVENTS); {prune} "
                            "shows the difference.", live_blocking(settings))
    return passed_check("webhook.events", f"Endpoint {endpoint.get('id')} is subscribed to exactly the {len(wanted)} "
                        f"allowed "
                        "events.")


def check_webhook_endpoints(gateway: Any, settings: Settings,
                            listed: list[dict[str, Any]] | None = None) -> list[CheckResult]:
    url = settings.console_webhook_url
    if not url:
        return [failed_check("webhook.endpoint", "CONSOLE_WEBHOOK_URL is not set, so the endpoint cannot be checked.",
                             "Set CONSOLE_WEBHOOK_URL to the public https URL of /billing/webhook.")]
    try:
        endpoints = listed if listed is not None else gateway.list_webhook_endpoints()
    except StripeGatewayError as error:
        return [failed_check("webhook.endpoint", f"Could not list webhook endpoints: {error.message}",
                             "Check the key can read webhook endpoints.")]
    matching = [e for e in endpoints if str(e.get("url", "")).rstrip("/") == url.rstrip("/")]
    results: list[CheckResult] = []
    if not matching:
        results.append(failed_check("webhook.endpoint", f"No webhook endpoint in Stripe delivers to {url}.",
                                    f"Create one in the Dashboard (Developers → Webhooks) for {url} with the console's "
                                    "events, and add its signing secret to STRIPE_WEBHOOK_SECRETS."))
    else:
        enabled = [e for e in matching if e.get("status", "enabled") == "enabled"]
        if not enabled:
            results.append(failed_check("webhook.endpoint", f"The endpoint for {url} is disabled.",
                                        "Enable it in the Dashboard (Developers → Webhooks)."))
        else:
            endpoint = enabled[0]
            events = _events_result(endpoint, settings, url)
            if events.passed or not events.blocking_failure:
                results.append(passed_check("webhook.endpoint", f"Endpoint {endpoint.get('id')} delivers to {url} "
                                            f"and is "
                                            "enabled."))
            results.append(events)
    if len(matching) > 1:
        ids = ", ".join(str(e.get("id")) for e in matching)
        results.append(failed_check("webhook.duplicates", f"{len(matching)} endpoints deliver to {url} ({ids}): every "
                                    "event would arrive more than once.",
                                    f"Run `billing-ops prune-webhooks --url {url}` (dry-run), then add --apply."))
    else:
        results.append(passed_check("webhook.duplicates", f"Exactly {len(matching)} endpoint delivers to {url}."
                                    if matching else f"No duplicate endpoints for {url}."))
    return results


def _enabled(feature: Any) -> bool:
    value = (feature or {}).get("enabled")
    return value is True or value == "true"


def check_portal(gateway: Any, settings: Settings) -> CheckResult:
    try:
        configurations = gateway.list_portal_configurations()
    except StripeGatewayError as error:
        return failed_check("portal.configured", f"Could not read billing portal configurations: {error.message}",
                            "Check the key can read billing portal settings.")
    active = [c for c in configurations if c.get("active", True)]
    if not active:
        return failed_check("portal.configured", "No active customer portal configuration exists.",
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
        return failed_check("portal.configured", f"Portal configuration {configuration.get('id')}: " + "; "
                            "".join(problems)
                            + ".", "In the Dashboard's customer portal settings enable plan switching (with the mapped "
                            "prices), payment method updates, invoices and cancellation.")
    return passed_check("portal.configured", f"Portal configuration {configuration.get('id')} allows plan switches, "
                        f"card "
                        "updates, invoices and cancellation.")


def check_tax(gateway: Any, settings: Settings) -> CheckResult:
    """Numzy §2/§10: with STRIPE_AUTOMATIC_TAX_ENABLED, Stripe Tax must be active (head office set)."""
    if not settings.stripe_automatic_tax_enabled:
        return passed_check("stripe.tax", "STRIPE_AUTOMATIC_TAX_ENABLED is off: Stripe Tax is not used.", "warning")
    try:
        tax = gateway.retrieve_tax_settings()
    except StripeGatewayError as error:
        return failed_check("stripe.tax", f"Could not read Stripe Tax settings: {error.message}",
                            "Check the key can read tax settings (Tax Settings: read).", live_blocking(settings))
    status = tax.get("status")
    if status != "active":
        missing = ((tax.get("status_details") or {}).get("pending") or {}).get("missing_fields") or []
        detail = f" (missing: {', '.join(missing)})" if missing else ""
        return failed_check("stripe.tax", f"STRIPE_AUTOMATIC_TAX_ENABLED=true but Stripe Tax is {status}{detail}: "
                            f"every "
                            "checkout and invoice with automatic tax would fail.",
                            "Set the head office address in Dashboard → Settings → Tax (or turn "
                            "STRIPE_AUTOMATIC_TAX_ENABLED off).", live_blocking(settings))
    address = ((tax.get("head_office") or {}).get("address") or {})
    where = ", ".join(str(address[k]) for k in ("state", "country") if address.get(k))
    return passed_check("stripe.tax", f"Stripe Tax is active (head office {where or 'set'}).")


def wallet_domain(settings: Settings) -> str | None:
    if settings.stripe_payment_method_domain:
        return str(settings.stripe_payment_method_domain).strip().lower()
    host = urlsplit(settings.console_webhook_url or "").hostname
    return host.lower() if host else None


def check_wallets(gateway: Any, settings: Settings) -> CheckResult:
    """Numzy §11: wallets at launch need the domain registered, enabled and active for each wallet."""
    if not settings.stripe_wallets_enabled:
        return passed_check("wallets.domain", "STRIPE_WALLETS_ENABLED is off: no wallets at launch.", "warning")
    domain = wallet_domain(settings)
    severity = live_blocking(settings)
    if not domain:
        return failed_check("wallets.domain", "Wallets are on but no payment domain is known.",
                            "Set STRIPE_PAYMENT_METHOD_DOMAIN to the domain customers pay on.", severity)
    try:
        domains = gateway.list_payment_method_domains(domain_name=domain)
    except StripeGatewayError as error:
        return failed_check("wallets.domain", f"Could not read payment method domains: {error.message}",
                            "Check the key can read payment method domains.", severity)
    found = next((d for d in domains if d.get("domain_name") == domain), None)
    if found is None:
        return failed_check("wallets.domain", f"{domain} is not registered as a payment method domain, so Apple Pay "
                            f"and "
                            "Google Pay will not show.", f"Register {domain} in Dashboard → Settings → Payment method "
                            "domains, serving /.well-known/apple-developer-merchantid-domain-association.", severity)
    problems = [] if found.get("enabled") else ["the domain is disabled"]
    for field, name in WALLETS:
        state = found.get(field) or {}
        if state.get("status") != "active":
            reason = (state.get("status_details") or {}).get("error_message")
            problems.append(f"{name} is {state.get('status', 'unknown')}" + (f" ({reason})" if reason else ""))
    if problems:
        return failed_check("wallets.domain", f"Payment method domain {found.get('id')} ({domain}): " + "; "
                            "".join(problems)
                            + ".", "Fix the domain in Dashboard → Settings → Payment method domains (serve the Apple "
                                   "Pay "
                            "association file, enable the domain), then press Validate.", severity)
    return passed_check("wallets.domain", f"{domain} is registered, enabled and active for Apple Pay and Google Pay.")


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
        return failed_check("config.mode_identifiers", f"{other.capitalize()}-mode identifiers in a {mode} "
                            f"configuration: "
                            + "; ".join(wrong) + ".", f"Replace them with their {mode}-mode counterparts "
                            f"(STRIPE_PLAN_PRICE_MAPPING_{mode.upper()}, STRIPE_PUBLISHABLE_KEY, the {mode} endpoint's "
                            "signing secret).", live_blocking(settings))
    return passed_check("config.mode_identifiers", f"Every key, price and endpoint checked is a {mode}-mode one.")
