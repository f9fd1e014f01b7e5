"""Preflight checks that need no Stripe call: keys and secrets, admins and sign-in, the
reconcile cron, Sentry, the database, the audit chain, sign-off roles, metrics, the checkout
rate limit, the deployment repo's secrets and the manual checklist."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.admin_lookalikes import admitted_lookalikes, lookalike_identities
from services.config import (
    REQUIRED_PLAN_INTERVALS,
    Settings,
    publishable_key_mode,
    stripe_key_mode,
)
from services.preflight_result import CheckResult, Severity, failed_check, key_hint, passed_check
from services.runtime import Runtime
from services.secret_scan import SecretScanError, scan_repository
from services.sentry_probe import TEST_EVENT_TAG, send_test_event
from services.stripe_gateway import PINNED_API_VERSION

# The receiver's paths (webhooks/app.py WEBHOOK_PATHS): the runbook's and ALwrity's alias.
CONSOLE_WEBHOOK_PATHS = ("/billing/webhook", "/api/subscription/webhook")

# A metric our receiver always exposes: proves /metrics is ours and not a proxy's page.
RECEIVER_METRIC = "stripe_webhook_deliveries"
METRICS_TIMEOUT_SECONDS = 5.0


def database_missing(runtime: Runtime) -> bool:
    from db.session import missing_sqlite_file

    return missing_sqlite_file(runtime.settings.database_url) is not None


def live_blocking(settings: Settings) -> Severity:
    """A runbook precondition: blocks a live launch, only warns while testing."""
    return "blocking" if settings.stripe_mode == "live" else "warning"


def check_stripe_key(settings: Settings) -> CheckResult:
    key = settings.stripe_secret
    if not key:
        return failed_check("stripe.key", "No Stripe secret key is set.",
                            f"Set STRIPE_API_KEY to your {settings.stripe_mode}-mode secret key "
                            f"(sk_{settings.stripe_mode}_…).")
    mode = stripe_key_mode(key)
    if mode != settings.stripe_mode:
        return failed_check("stripe.key", f"STRIPE_MODE is {settings.stripe_mode} but the key is {key_hint(key)}.",
                            "Use a key whose prefix matches STRIPE_MODE, or change STRIPE_MODE.")
    return passed_check("stripe.key", f"Key {key_hint(key)} matches STRIPE_MODE={settings.stripe_mode}.")


def check_webhook_secrets(settings: Settings) -> CheckResult:
    count = len(settings.webhook_secret_values)
    if count == 0:
        return failed_check("webhook.secrets", "No webhook signing secret is set, so every delivery would be rejected.",
                            "Copy the endpoint's signing secret (whsec_…) into STRIPE_WEBHOOK_SECRETS "
                            "(comma-separate old and new during rotation).")
    return passed_check("webhook.secrets", f"{count} webhook signing secret(s) configured.")


def check_admin_access(settings: Settings) -> CheckResult:
    if not settings.admin_emails and not settings.admin_email_domain:
        return failed_check("auth.admins", "Neither ADMIN_EMAILS nor ADMIN_EMAIL_DOMAIN is set: nobody can use the "
                            "console.",
                            "Set ADMIN_EMAILS=a@company.com,b@company.com or ADMIN_EMAIL_DOMAIN=company.com.")
    parts = []
    if settings.admin_emails:
        parts.append(f"{len(settings.admin_emails)} admin email(s)")
    if settings.admin_email_domain:
        parts.append(f"domain {settings.admin_email_domain}")
    return passed_check("auth.admins", "Admin access is set: " + " and ".join(parts) + ".")


def check_auth_enabled(settings: Settings) -> CheckResult:
    if settings.disable_auth:
        return failed_check("auth.enabled", "DISABLE_AUTH is true: anyone reaching the console is signed in as an "
                            "admin.",
                            "Unset DISABLE_AUTH (or set it to false) and restart the console.")
    return passed_check("auth.enabled", "Sign-in is required (DISABLE_AUTH is not set).")


def check_reconcile_cron(settings: Settings) -> CheckResult:
    interval = settings.reconcile_cron_interval_seconds
    lookahead = settings.reconcile_cron_lookahead_seconds
    if lookahead <= interval:
        return failed_check("reconcile.cron",
                            f"The reconcile lookahead ({lookahead} s) is not longer than its interval ({interval} s), "
                            "so a downgrade due between two runs could be missed.",
                            "Set RECONCILE_CRON_LOOKAHEAD_SECONDS above RECONCILE_CRON_INTERVAL_SECONDS "
                            "(runbook: 900 and 420).")
    if not settings.reconcile_cron_enabled:
        # Scheduled downgrades are only applied by the cron; in live mode that is a launch blocker.
        severity: Severity = "blocking" if settings.stripe_mode == "live" else "warning"
        return failed_check("reconcile.cron", "RECONCILE_CRON_ENABLED is off: scheduled downgrades will not be "
                            "applied.",
                            "Set RECONCILE_CRON_ENABLED=true on the worker and restart it.", severity)
    return passed_check("reconcile.cron", f"Reconciliation runs every {interval} s looking {lookahead} s ahead.")


def check_sentry(settings: Settings) -> CheckResult:
    if not settings.sentry_dsn:
        return failed_check("observability.sentry", "SENTRY_DSN is not set: errors and alerts will not reach Sentry.",
                            "Set SENTRY_DSN to the project's DSN.", "warning")
    return passed_check("observability.sentry", "Sentry DSN is set.", "warning")


def check_audit_chain(runtime: Runtime) -> CheckResult:
    """The audit log verifies (links, keyed hashes, anchored heads) and is keyed in live mode."""
    from services.audit import verify_chain

    settings = runtime.settings
    if database_missing(runtime):
        return failed_check("audit.chain", "The audit log was not read: the billing database does not exist.",
                            "Fix db.migrated first.", "warning")
    try:
        verification = verify_chain(runtime.uow())
    except Exception as error:  # an unmigrated DB is reported by db.migrated; this one just says why
        return failed_check("audit.chain", f"The audit log could not be read ({error.__class__.__name__}).",
                            "Fix db.migrated first.", "warning")
    if not verification.ok:
        return failed_check("audit.chain", f"The audit chain does not verify at row {verification.first_broken_id}: "
                            f"{verification.problem}.", "Investigate on the Audit page before launch; restore the "
                            "audit_log table from a backup if rows were removed.")
    if not settings.audit_hmac_key:
        return failed_check("audit.chain", f"The audit chain verifies ({verification.rows_checked} rows) but is not "
                            f"keyed: "
                            "someone with DB access could re-hash it.", "Set AUDIT_HMAC_KEY (32+ random bytes, kept "
                            "outside the DB) before the first audited action.", live_blocking(settings))
    return passed_check("audit.chain", f"The audit chain verifies: {verification.rows_checked} rows keyed with "
                        f"AUDIT_HMAC_KEY, {verification.anchors_checked} anchored head(s) in place.")


def check_signoff_roles(settings: Settings) -> CheckResult:
    missing = [name for name, people in (("SIGNOFF_ENG_LEADS", settings.signoff_eng_leads),
                                         ("SIGNOFF_PRODUCT_OWNERS", settings.signoff_product_owners)) if not people]
    if missing:
        return failed_check("signoff.roles", f"{' and '.join(missing)} not set: nobody can sign the launch off.",
                            "Set SIGNOFF_ENG_LEADS and SIGNOFF_PRODUCT_OWNERS to the signers' emails.", "warning")
    return passed_check("signoff.roles", "Sign-off roles are named.", "warning")


def check_api_version() -> CheckResult:
    return passed_check("stripe.api_version", f"Stripe API version pinned by the SDK: {PINNED_API_VERSION}.", "warning")


def check_database(settings: Settings) -> CheckResult:
    from db.migrate import is_at_head
    from db.session import missing_sqlite_file

    missing = missing_sqlite_file(settings.database_url)
    if missing:
        return failed_check("db.migrated", f"The billing database file {missing} does not exist.",
                            "Check DATABASE_URL, or run `billing-ops db upgrade` to create it.")
    try:
        at_head = is_at_head(settings.database_url)
    except Exception as error:  # an unreachable DB is a failed check, not a crash
        return failed_check("db.migrated", f"The billing database could not be read ({error.__class__.__name__}).",
                            "Check DATABASE_URL and that the database is reachable, then run `billing-ops db upgrade`.")
    if not at_head:
        return failed_check("db.migrated", "The billing database is not migrated to the latest revision.",
                            "Run `billing-ops db upgrade`.")
    return passed_check("db.migrated", "The billing database is at the latest migration.")


def check_required_plans(settings: Settings) -> CheckResult:
    missing = [f"{plan}.{interval}" for plan, interval in REQUIRED_PLAN_INTERVALS
               if not settings.price_id(plan, interval)]
    if missing:
        return failed_check("prices.required", f"Required plans are not mapped to a price: {', '.join(missing)}.",
                            f"Add them to STRIPE_PLAN_PRICE_MAPPING_{settings.stripe_mode.upper()} "
                            "(or STRIPE_PRICE_<PLAN>_<INTERVAL>).")
    return passed_check("prices.required", "basic.monthly and pro.monthly are mapped.")


def check_webhook_url(settings: Settings) -> CheckResult:
    """Numzy §3.1 / ALwrity §4: an https URL ending in the receiver's path."""
    url = settings.console_webhook_url
    if not url:
        return failed_check("webhook.url", "CONSOLE_WEBHOOK_URL is not set.",
                            "Set CONSOLE_WEBHOOK_URL to the public https URL of /billing/webhook.")
    parts = urlsplit(url)
    problems = []
    if parts.scheme != "https":
        problems.append("it is not https")
    if not parts.path.rstrip("/").endswith(CONSOLE_WEBHOOK_PATHS):
        problems.append(f"its path {parts.path or '/'} is not {' or '.join(CONSOLE_WEBHOOK_PATHS)}")
    if problems:
        return failed_check("webhook.url", f"The webhook URL {url} is wrong: " + "; ".join(problems) + ".",
                            "Point the endpoint (and CONSOLE_WEBHOOK_URL) at https://<your host>/billing/webhook.",
                            live_blocking(settings))
    return passed_check("webhook.url", f"The webhook URL {url} is https and ends in {parts.path.rstrip('/')}.")


def check_publishable_key(settings: Settings) -> CheckResult:
    """Numzy §2: STRIPE_PUBLISHABLE_KEY present, same mode as the secret key."""
    key = settings.stripe_publishable_key
    if not key:
        return failed_check("stripe.publishable_key", "STRIPE_PUBLISHABLE_KEY is not set: the browser cannot open "
                            "Checkout or Elements.", f"Set STRIPE_PUBLISHABLE_KEY to the pk_{settings.stripe_mode}_… "
                                                     f"key of "
                            "the same account.", live_blocking(settings))
    mode = publishable_key_mode(key)
    if mode != settings.stripe_mode:
        return failed_check("stripe.publishable_key", f"The publishable key is {key_hint(key)} but the secret key and "
                            f"STRIPE_MODE are {settings.stripe_mode} mode.",
                            f"Use the pk_{settings.stripe_mode}_… key from the same account and mode as the secret "
                            f"key.")
    return passed_check("stripe.publishable_key", f"Publishable key {key_hint(key)} matches {settings.stripe_mode} "
                                                  f"mode.")


def metrics_urls(settings: Settings) -> list[str]:
    if settings.metrics_urls:
        return list(settings.metrics_urls)
    parts = urlsplit(settings.console_webhook_url or "")
    return [f"{parts.scheme}://{parts.netloc}/metrics"] if parts.scheme and parts.netloc else []


def check_metrics(settings: Settings, fetch: Callable[[str], httpx.Response] | None = None) -> CheckResult:
    """Numzy §2 (DRAMATIQ_PROMETHEUS_ENABLED): our receiver's/worker's Prometheus /metrics is reachable."""
    if not settings.metrics_enabled:
        return passed_check("metrics.reachable", "Prometheus metrics are off (METRICS_ENABLED / "
                            "DRAMATIQ_PROMETHEUS_ENABLED).",
                            "warning")
    urls = metrics_urls(settings)
    if not urls:
        return failed_check("metrics.reachable", "Metrics are on but no /metrics URL is known.",
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
        return failed_check("metrics.reachable", "Metrics are not readable: " + "; ".join(problems) + ".",
                            "Run `billing-ops serve-webhooks` and make GET /metrics reachable from the scraper, or fix "
                            "METRICS_URLS.", "warning")
    return passed_check("metrics.reachable", f"Prometheus metrics answer at {', '.join(urls)}.", "warning")


def check_checkout_rate_limit(settings: Settings, post: Callable[[str], int] | None = None) -> CheckResult:
    """ALwrity §7: a burst against the SaaS's create-checkout-session endpoint meets a 429."""
    from services.checkout_probe import probe

    url = settings.checkout_probe_url
    if settings.stripe_mode == "live":
        return failed_check("checkout.rate_limit", "Not probed: the burst is never sent in live mode.",
                            "Run the probe against test or staging (CHECKOUT_PROBE_URL there).", "warning")
    if not url or not url.startswith(("http://", "https://")):
        return failed_check("checkout.rate_limit", "CHECKOUT_PROBE_URL is not an http(s) URL.",
                            "Set it to the create-checkout-session URL of the test or staging SaaS.", "warning")
    result = probe(url, requests=settings.checkout_probe_requests, seconds=settings.checkout_probe_seconds,
                   post=post)
    seen = ", ".join(f"{count}× {status}" for status, count in sorted(result.statuses.items()))
    if result.limited_after is not None:
        return passed_check("checkout.rate_limit", f"{url} answered 429 at request {result.limited_after} of a burst "
                            f"of "
                            f"{settings.checkout_probe_requests} in {settings.checkout_probe_seconds:g} s ({seen}).",
                            "warning")
    return failed_check("checkout.rate_limit", f"{url} never answered 429: {result.sent} requests in "
                        f"{result.seconds:g} s "
                        f"({seen}).", "Rate-limit the create-checkout-session endpoint (and log each 429), then re-run "
                        "`billing-ops check`.", "warning")


def check_repo_secrets(repo: str | None) -> CheckResult:
    """ALwrity §1: no Stripe keys committed, in the files or anywhere in the history."""
    if not repo:
        return failed_check("secrets.repo", "The deployment repository was not scanned for committed Stripe secrets.",
                            "Run `billing-ops check --repo PATH` (or set DEPLOYMENT_REPO_PATH).", "warning")
    try:
        findings = scan_repository(repo)
    except SecretScanError as error:
        return failed_check("secrets.repo", f"Could not scan {repo}: {error.message}",
                            "Point --repo at a readable checkout (with its .git directory).")
    if findings:
        shown = "; ".join(f.describe() for f in findings[:10])
        more = f" and {len(findings) - 10} more" if len(findings) > 10 else ""
        return failed_check("secrets.repo", f"{len(findings)} Stripe secret(s) committed: {shown}{more}.",
                            "Roll every listed key and signing secret in the Dashboard now (history keeps them), move "
                            "them to the secret manager, then purge them from the history.")
    return passed_check("secrets.repo", f"No sk_live_/rk_live_/whsec_ secret in {repo}'s files or git history.")


def check_sentry_test_event(settings: Settings, run_id: str) -> CheckResult:
    """Numzy §1: the Sentry project receives test events; a person confirms the event id arrived."""
    result = send_test_event(settings, run_id=run_id)
    if not result.delivered:
        return failed_check("observability.sentry_test_event", f"The Sentry test event was not delivered "
                            f"({result.reason}).", "Check SENTRY_DSN and that this host can reach Sentry's ingest.",
                            "warning")
    return passed_check("observability.sentry_test_event", f"Test event {result.event_id} sent (tag {TEST_EVENT_TAG}="
                        f"test_event, run {run_id}); confirm it arrived in the Sentry project.", "warning")


def check_admin_lookalikes(settings: Settings) -> CheckResult:
    """ALwrity §5: no look-alike address (suffix, subdomain, extra @ ...) is let in as an admin."""
    admitted = admitted_lookalikes(settings)
    tried = len(lookalike_identities(settings))
    if admitted:
        return failed_check("auth.lookalikes", f"{len(admitted)} of {tried} look-alike identities would be admitted: "
                            f"{', '.join(repr(a) for a in admitted)}.",
                            "Fix ADMIN_EMAILS / ADMIN_EMAIL_DOMAIN so only the exact addresses and domain match.")
    return passed_check("auth.lookalikes", f"None of {tried} look-alike identities (subdomain, suffix, extra @, "
                        f"outsider) is "
                        "admitted.")


def check_checklist_complete(runtime: Runtime) -> CheckResult:
    """Numzy §1: every pre-launch manual checklist item is done (or n/a)."""
    from services.checklist import PRE_LAUNCH_SECTIONS, SEED_ITEMS, list_items

    if database_missing(runtime):
        return failed_check("checklist.complete", "The checklist was not read: the billing database does not exist.",
                            "Fix db.migrated first.", "warning")
    try:
        items = {item["key"]: item for item in list_items(runtime.uow())}
    except Exception as error:  # an unmigrated DB is reported by db.migrated; this one just says why
        return failed_check("checklist.complete", f"The checklist could not be read ({error.__class__.__name__}).",
                            "Fix db.migrated first.", "warning")
    open_titles = [seed.title for seed in SEED_ITEMS if seed.section in PRE_LAUNCH_SECTIONS
                   and (items.get(seed.key) or {}).get("status", "open") == "open"]
    if open_titles:
        shown = ", ".join(open_titles[:5]) + (f" and {len(open_titles) - 5} more" if len(open_titles) > 5 else "")
        return failed_check("checklist.complete", f"{len(open_titles)} manual checklist item(s) still open: {shown}.",
                            "Work them on the Go-live page (mark each done or n/a with a note).", "warning")
    return passed_check("checklist.complete", "Every pre-launch manual checklist item is done or n/a.", "warning")
