"""The settings' constants: Stripe's rate limits, the runbook's defaults, the plans the
console needs, the event types it handles, and the one-line fix shown for each rejected
variable. `services.config` re-exports them; import from there unless you only need these.
"""

from __future__ import annotations

# Stripe's documented per-mode rate limits (requests/second), see
# https://docs.stripe.com/rate-limits ; the gateway stays under 80 % of them.
STRIPE_RATE_LIMITS = {"live": 100, "test": 25}
RATE_LIMIT_SHARE = 0.8

# The runbook's reconciliation cadence: every 420 s, looking 900 s ahead.
DEFAULT_RECONCILE_INTERVAL_SECONDS = 420
DEFAULT_RECONCILE_LOOKAHEAD_SECONDS = 900

# Plans the console cannot go live without (go-live checklist section 2).
REQUIRED_PLAN_INTERVALS = (("basic", "monthly"), ("pro", "monthly"))
KNOWN_INTERVALS = ("monthly", "yearly")

# Events the console handles; the webhook endpoint must be subscribed to them.
CONSOLE_EVENT_TYPES = (
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.updated",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "radar.early_fraud_warning.created",
    "radar.early_fraud_warning.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
)

PriceMapping = dict[str, dict[str, str]]
AUDIT_KEY_MIN_BYTES = 32
ENV_FILE_VARIABLE = "BILLING_OPS_ENV_FILE"

# What to tell the user for each variable when its value is rejected.
SETTING_FIXES: dict[str, str] = {
    "DATABASE_URL": "use sqlite:///path.db or postgresql+psycopg://user@host/db",
    "STRIPE_API_KEY": (
        "set STRIPE_API_KEY (or STRIPE_SECRET_KEY) to a key starting sk_test_/rk_test_ or sk_live_/rk_live_"
    ),
    "STRIPE_MODE": "set STRIPE_MODE=test or STRIPE_MODE=live, matching the key prefix",
    "STRIPE_WEBHOOK_SECRETS": "use comma-separated signing secrets that each start with whsec_",
    "STRIPE_PLAN_PRICE_MAPPING": 'use JSON like {"basic":{"monthly":"price_..."}}',
    "DISABLE_AUTH": "unset DISABLE_AUTH (it is refused in live mode)",
    "RECONCILE_CRON_INTERVAL_SECONDS": "use a whole number of seconds, e.g. 420",
    "RECONCILE_CRON_LOOKAHEAD_SECONDS": "use a whole number of seconds, e.g. 900",
    "ADMIN_EMAIL_DOMAIN": "use a bare domain such as example.com",
    "ADMIN_EMAILS": "use comma-separated plain ASCII emails such as ops@example.com",
    "SIGNOFF_ENG_LEADS": "use comma-separated plain ASCII emails such as lead@example.com",
    "SIGNOFF_PRODUCT_OWNERS": "use comma-separated plain ASCII emails such as po@example.com",
    "AUDIT_HMAC_KEY": "use a random key of at least 32 bytes, e.g. python3 -c 'import secrets; "
                      "print(secrets.token_urlsafe(32))'",
    "STRIPE_PUBLISHABLE_KEY": "use the publishable key (pk_test_... or pk_live_...) from the same Stripe account",
    "STRIPE_SMOKE_TEST_PRICE": "use the price_... id of the cheapest recurring price the account sells",
    "SMOKE_TEST_RETURN_URL": "use the https:// page Checkout should send the smoke-test buyer back to",
    "SENTRY_DSN": (
        "use the DSN from Sentry's project settings, like https://<public key>@o0.ingest.sentry.io/<project id>"
    ),
}

