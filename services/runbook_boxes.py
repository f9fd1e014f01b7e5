"""Every box of both go-live runbooks, and who ticks it: a preflight check or a person.

This is the one place that says so. The Go-live page and `billing-ops check --json`
both read it: a machine box shows its checks' result and the time of the last
preflight run; a manual box names the checklist item a person ticks (who and
when are stamped on it) and the item says why no machine can tick it.

Runbooks: `numzy` is the billing go-live runbook (sections 1-14), `alwrity` the
go-live checklist (sections 1-9). Boxes keep the runbooks' own words and order;
a box's id is `<runbook>:<section>:<position in section>`. `price.*` stands for
every `price.<plan>.<interval>` check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Runbook = Literal["numzy", "alwrity"]
RUNBOOK_TITLES = {"numzy": "Billing go-live runbook", "alwrity": "Go-live checklist"}


@dataclass(frozen=True)
class Box:
    id: str
    runbook: Runbook
    section: str
    text: str
    checks: tuple[str, ...] = ()  # ticked by the machine when every one of these passes
    manual: str | None = None  # else: the checklist item key a person ticks

    @property
    def automated(self) -> bool:
        return bool(self.checks)


def _c(*ids: str) -> str:
    return "c:" + ",".join(ids)


def _m(key: str) -> str:
    return "m:" + key


_NUMZY: tuple[tuple[str, str, str], ...] = (
    ("1", "All blocking checklist items marked complete (see `Stripe_Checklist.md`).", _c("checklist.complete")),
    ("1", "Tests green (backend + frontend billing suites).", _m("tests_green")),
    ("1", "Sentry project receiving test events.", _c("observability.sentry", "observability.sentry_test_event")),
    ("2", "STRIPE*API_KEY=sk_live*...", _c("stripe.key", "stripe.reachable")),
    ("2", "STRIPE*PUBLISHABLE_KEY=pk_live*...", _c("stripe.publishable_key")),
    ("2", "STRIPE_WEBHOOK_SECRETS=<primary,rotating>", _c("webhook.secrets")),
    ("2", "STRIPE*PRICE*\\* IDs (monthly & yearly as applicable)", _c("prices.required", "price.*")),
    ("2", "RECONCILE_CRON_ENABLED=true (worker)", _c("reconcile.cron")),
    ("2", "RECONCILE_CRON_INTERVAL_SECONDS=420 (tune if needed)", _c("reconcile.cron")),
    ("2", "RECONCILE_CRON_LOOKAHEAD_SECONDS=900", _c("reconcile.cron")),
    ("2", "STRIPE_WEBHOOK_ALLOWED_EVENTS=(comma list matching pruning allowlist)", _c("webhook.events")),
    ("2", "STRIPE_AUTOMATIC_TAX_ENABLED=true", _c("stripe.tax")),
    ("2", "DRAMATIQ_PROMETHEUS_ENABLED=true", _c("metrics.reachable")),
    ("3", "Create production webhook endpoint pointing to https URL `/billing/webhook`.",
     _c("webhook.url", "webhook.endpoint")),
    ("3", "Capture new secret; append to STRIPE_WEBHOOK_SECRETS (keep old for rotation overlap).",
     _c("webhook.secrets")),
    ("3", "Run pruning script (dry-run then apply):", _c("webhook.duplicates")),
    ("3", "Confirm only allowlist events remain.", _c("webhook.events")),
    ("4", "For each plan (personal, pro, business) and interval (monthly/yearly) ensure live Price IDs env vars "
     "present.", _c("prices.required", "config.mode_identifiers")),
    ("4", "Run a dry API call in prod shell: `/billing/catalog` -> verify prices & intervals.", _c("price.*")),
    ("5", "In Dashboard: enable plan switching, payment method updates, invoices, cancellation (no proration credit "
     "on downgrade mid-cycle).", _c("portal.configured")),
    ("5", "Record Portal configuration ID (if necessary) and test with `/billing/portal`.", _m("portal_tested")),
    ("6", "New subscription", _m("qa_matrix")),
    ("6", "Upgrade", _m("qa_matrix")),
    ("6", "Downgrade schedule", _m("qa_matrix")),
    ("6", "Reconciliation", _m("qa_matrix")),
    ("6", "SCA required", _m("qa_matrix")),
    ("6", "Past due", _m("qa_matrix")),
    ("6", "Portal downgrade", _m("qa_matrix")),
    ("6", "Cancel", _m("qa_matrix")),
    ("7", "stripe.webhook.received / duplicate / ignored / invalid_signature", _m("metrics_present")),
    ("7", "stripe.subscription.preview / change / plan.changed / downgrade_scheduled / downgrade.applied",
     _m("metrics_present")),
    ("7", "stripe.subscription.reconcile.run (completed, applied counts)", _m("metrics_present")),
    ("7", "stripe.subscription.change.error (ideally zero)", _m("metrics_present")),
    ("7", "invoice.paid / invoice.failed / invoice.action_required", _m("metrics_present")),
    ("7", "stripe.dunning.entered / stripe.dunning.recovered", _m("metrics_present")),
    ("7", "stripe.sca.entered / stripe.sca.completed", _m("metrics_present")),
    ("8", "High error rate on change.error.", _m("alerts_configured")),
    ("8", "Reconcile run applied spike threshold (e.g., >50 in run) or consecutive errors.", _m("alerts_configured")),
    ("8", "Invoice failure % above baseline.", _m("alerts_configured")),
    ("9", "Trigger invoice.payment_failed (replace card with failing test token) -> banner -> update to working "
     "card.", _m("qa_matrix")),
    ("9", "Trigger payment_action_required (3DS) -> banner & completion.", _m("qa_matrix")),
    ("10", "Submit address via Address Element; confirm persisted & Stripe Customer updated.", _m("tax_address")),
    ("10", "Stripe Tax calculation present on test invoice (if enabled).", _m("tax_address")),
    ("11", "Register Apple Pay domain (verify file served from "
     "/.well-known/apple-developer-merchantid-domain-association).", _c("wallets.domain")),
    ("11", "Enable Apple & Google Pay in Dashboard + check Express Checkout renders in production.",
     _m("apple_pay_domain")),
    ("12", "Disable RECONCILE_CRON_ENABLED (env) and restart worker (halts automated downgrades).",
     _m("rollback_disable_cron")),
    ("12", "Revert deployment to last known good image tag.", _m("rollback_revert_image")),
    ("12", "If webhook malfunction: temporarily remove endpoint in Dashboard (Stripe will queue events for a short "
     "time) and fix.", _m("rollback_remove_endpoint")),
    ("12", "Use `customer.subscription.update` via Stripe Dashboard for manual corrections.",
     _m("rollback_manual_corrections")),
    ("13", "Track new subscription success rate.", _m("post_launch_watch")),
    ("13", "Monitor reconcile.applied counts vs expected downgrades.", _m("post_launch_watch")),
    ("13", "Inspect any change.error occurrences and resolve.", _m("post_launch_watch")),
    ("14", "Engineering lead approval.", _m("signoff")),
    ("14", "Product owner acknowledgement.", _m("signoff")),
    ("14", "Sentry dashboard link & metrics snapshot archived.", _m("sentry_dashboard")),
)

_ADMIN_TOOLS = _m("ops_tools_verified")
_ALWRITY: tuple[tuple[str, str, str], ...] = (
    ("1", "**Separate environments set up**", _m("accounts_separate")),
    ("1", "Test mode Stripe account configured.", _m("accounts_separate")),
    ("1", "Live mode Stripe account configured.", _c("stripe.key", "stripe.reachable")),
    ("1", "**Environment variables configured for production**", _c("stripe.key", "webhook.secrets", "auth.admins")),
    ("1", "`STRIPE_SECRET_KEY` set to **live** secret key.", _c("stripe.key")),
    ("1", "`STRIPE_WEBHOOK_SECRET` set to **live** webhook signing secret.",
     _c("webhook.secrets", "config.mode_identifiers")),
    ("1", "`STRIPE_MODE=live` is set (recommended for explicit mode selection).", _c("stripe.key")),
    ("1", "`STRIPE_PLAN_PRICE_MAPPING_LIVE` is set to JSON mapping live price IDs.",
     _c("prices.required", "config.mode_identifiers")),
    ("1", "(Optional fallback) `STRIPE_PLAN_PRICE_MAPPING` is set only if you intentionally use one shared mapping "
     "across environments.", _m("shared_mapping_intent")),
    ("1", "`ADMIN_EMAILS` configured with correct admin emails (comma-separated).", _c("auth.admins")),
    ("1", "`ADMIN_EMAIL_DOMAIN` configured if using domain-based admin access.", _c("auth.admins", "auth.lookalikes")),
    ("1", "`DISABLE_AUTH` is **not** set to `\"true\"` in production.", _c("auth.enabled")),
    ("1", "**Secrets handling**", _c("secrets.repo")),
    ("1", "No Stripe keys are committed to the repo.", _c("secrets.repo")),
    ("1", "Secrets are stored only in your deployment platform / secret manager.", _m("secrets_in_manager")),
    ("2", "**All required prices exist in Stripe (live)**", _c("prices.required", "price.*")),
    ("2", "BASIC monthly price created.", _c("price.*")),
    ("2", "PRO monthly price created (if used).", _c("price.*")),
    ("2", "Yearly prices created if you plan to sell yearly plans.", _m("catalogue_intent")),
    ("2", "**Price mapping in backend updated**", _c("prices.required")),
    ("2", "`STRIPE_PLAN_PRICE_MAPPING_LIVE` uses **live** price IDs (not test IDs).", _c("config.mode_identifiers")),
    ("2", "`STRIPE_PLAN_PRICE_MAPPING_TEST` is configured separately for test deployments.",
     _m("test_deployment_mapping")),
    ("2", "Mapping includes required keys: `basic.monthly` and `pro.monthly`.", _c("prices.required")),
    ("2", "Mapping covers any additional tiers and billing cycles you intend to offer.", _m("catalogue_intent")),
    ("2", "**SubscriptionPlan data is consistent**", _m("product_db")),
    ("2", "DB has `SubscriptionPlan` rows for each tier (BASIC/PRO/etc.).", _m("product_db")),
    ("2", "`is_active` is set to true for sellable plans.", _m("product_db")),
    ("3", "**Model changes applied in production DB**", _c("db.migrated")),
    ("3", "Tables related to subscriptions exist:", _c("db.migrated")),
    ("3", "`subscription_plans`", _m("product_db")),  # the product backend's table; the console has none
    ("3", "`user_subscriptions`", _c("db.migrated")),
    ("3", "Usage/billing tables exist if used (`api_usage_logs`, `usage_summaries`, etc.).", _m("product_db")),
    ("3", "`fraud_warnings` table exists for early fraud warnings:", _c("db.migrated")),
    ("3", "Checked via DB console or migration logs.", _c("db.migrated")),
    ("3", "**Migration strategy verified**", _m("migration_process")),
    ("3", "Any migration scripts run successfully on staging.", _m("migration_process")),
    ("3", "Same process is planned for production.", _m("migration_process")),
    ("4", "**Production webhook endpoint configured in Stripe Dashboard**", _c("webhook.endpoint")),
    ("4", "URL points to your production backend:", _c("webhook.url", "webhook.endpoint")),
    ("4", "Uses HTTPS.", _c("webhook.url")),
    ("4", "**Subscribed events include at least**", _c("webhook.events")),
    ("4", "`checkout.session.completed`", _c("webhook.events")),
    ("4", "`invoice.payment_succeeded`", _c("webhook.events")),
    ("4", "`invoice.payment_failed`", _c("webhook.events")),
    ("4", "`customer.subscription.updated`", _c("webhook.events")),
    ("4", "`customer.subscription.deleted`", _c("webhook.events")),
    ("4", "`radar.early_fraud_warning.created`", _c("webhook.events")),
    ("4", "(Optional) `radar.early_fraud_warning.updated`", _c("webhook.events")),
    ("4", "**Webhook secret set correctly**", _c("webhook.secrets", "config.mode_identifiers")),
    ("4", "Copy live webhook signing secret from Stripe into `STRIPE_WEBHOOK_SECRET`.", _c("webhook.secrets")),
    ("4", "Confirm no test webhook secret is used in production.", _c("config.mode_identifiers")),
    ("4", "**Webhook endpoint health check**", _m("webhook_test_event")),
    ("4", "Trigger a test event from Stripe Dashboard (in a safe environment).", _m("webhook_test_event")),
    ("4", "Verify the backend logs show successful verification and handling.", _m("webhook_test_event")),
    ("5", "**Admin roles/permissions**", _c("auth.admins", "auth.lookalikes")),
    ("5", "Confirm at least one admin user can access `/stripe-disputes`.", _c("auth.admins", "auth.enabled")),
    ("5", "Non-admin users cannot access sensitive endpoints (disputes, fraud warnings).",
     _c("auth.lookalikes", "auth.enabled")),
    ("5", "**Disputes dashboard**", _ADMIN_TOOLS),
    ("5", "`/stripe-disputes` loads without error.", _ADMIN_TOOLS),
    ("5", "Disputes tab can:", _ADMIN_TOOLS),
    ("5", "List disputes.", _ADMIN_TOOLS),
    ("5", "Show dispute details.", _ADMIN_TOOLS),
    ("5", "Submit evidence.", _ADMIN_TOOLS),
    ("5", "Close a dispute.", _ADMIN_TOOLS),
    ("5", "**Fraud Warnings tab**", _ADMIN_TOOLS),
    ("5", "Fraud Warnings tab loads without error.", _ADMIN_TOOLS),
    ("5", "List of early fraud warnings is visible when test EFWs exist.", _ADMIN_TOOLS),
    ("5", "Details dialog shows:", _ADMIN_TOOLS),
    ("5", "Issuer fraud type.", _ADMIN_TOOLS),
    ("5", "Actionable flag.", _ADMIN_TOOLS),
    ("5", "Internal status / actions.", _ADMIN_TOOLS),
    ("5", "Buttons:", _ADMIN_TOOLS),
    ("5", "“Refund Full Amount” works (in test/staging).", _ADMIN_TOOLS),
    ("5", "“Mark as Ignored” works (updates status).", _ADMIN_TOOLS),
    ("5", "**Ops team trained**", _m("ops_trained_disputes")),
    ("5", "Ops have read the Ops Guide.", _m("ops_trained_disputes")),
    ("5", "They understand:", _m("ops_trained_disputes")),
    ("5", "How to respond to disputes.", _m("ops_trained_disputes")),
    ("5", "When to proactively refund EFWs.", _m("ops_trained_efw")),
    ("5", "When to escalate to engineering.", _m("ops_trained_efw")),
    ("6.1", "As a test user:", _m("qa_matrix")),
    ("6.1", "Go to Pricing page.", _m("qa_matrix")),
    ("6.1", "Select BASIC monthly (or equivalent).", _m("qa_matrix")),
    ("6.1", "Start Stripe Checkout and complete payment with test card.", _m("qa_matrix")),
    ("6.1", "You are redirected back to the success URL.", _m("qa_matrix")),
    ("6.1", "Backend:", _m("qa_matrix")),
    ("6.1", "Webhook logs show `checkout.session.completed` processed.", _m("qa_matrix")),
    ("6.1", "`UserSubscription` updated with `stripe_customer_id` and `stripe_subscription_id`.", _m("qa_matrix")),
    ("6.1", "Subscription status is `ACTIVE`.", _m("qa_matrix")),
    ("6.2", "From the app, open the billing portal (Customer Portal).", _m("portal_tested")),
    ("6.2", "`/api/subscription/create-portal-session` returns a URL.", _m("portal_tested")),
    ("6.2", "You can:", _m("portal_tested")),
    ("6.2", "View invoices.", _m("portal_tested")),
    ("6.2", "Update card details.", _m("portal_tested")),
    ("6.2", "Cancel a subscription.", _m("portal_tested")),
    ("6.2", "After cancellation:", _m("qa_matrix")),
    ("6.2", "Webhook logs show `customer.subscription.deleted`.", _m("qa_matrix")),
    ("6.2", "`UserSubscription` is updated to cancelled and not active.", _m("qa_matrix")),
    ("6.3", "Use a known failing test card.", _m("qa_matrix")),
    ("6.3", "Trigger a failed invoice.", _m("qa_matrix")),
    ("6.3", "Verify:", _m("qa_matrix")),
    ("6.3", "`invoice.payment_failed` processed.", _m("qa_matrix")),
    ("6.3", "`UserSubscription` status is set to `PAST_DUE` and `is_active` is false.", _m("qa_matrix")),
    ("6.4", "Create a test dispute in Stripes test mode.", _m("test_dispute_efw")),
    ("6.4", "Confirm:", _m("test_dispute_efw")),
    ("6.4", "Dispute appears in the Disputes tab.", _m("test_dispute_efw")),
    ("6.4", "You can open details and submit evidence.", _m("test_dispute_efw")),
    ("6.5", "Create a test Early Fraud Warning (if supported in test mode or via Stripe tools).",
     _m("test_dispute_efw")),
    ("6.5", "Confirm:", _m("test_dispute_efw")),
    ("6.5", "EFW is ingested and appears in Fraud Warnings tab.", _m("test_dispute_efw")),
    ("6.5", "Details dialog shows issuer `fraud_type` and `actionable` flag.", _m("test_dispute_efw")),
    ("6.5", "“Refund Full Amount” works in test (Stripe shows charge refunded).", _m("test_dispute_efw")),
    ("7", "**Checkout endpoint rate limiting**", _m("checkout_rate_limit")),
    ("7", "Confirm `create-checkout-session` applies per-user rate limits.", _m("checkout_rate_limit")),
    ("7", "Hitting the endpoint rapidly produces HTTP 429 and a log entry.", _m("checkout_rate_limit")),
    ("7", "**Monitoring for card testing**", _m("checkout_rate_limit")),
    ("7", "Logs for rate-limited events are visible in your logging system.", _m("logging_centralised")),
    ("7", "You have a plan to investigate suspicious spikes (many 429s or many failed payments).",
     _m("alerts_configured")),
    ("8", "**Logging**", _m("logging_centralised")),
    ("8", "Backend logs are centralized (e.g. in a logging service).", _m("logging_centralised")),
    ("8", "Key Stripe flows (webhooks, disputes, fraud warnings) log useful context.", _m("logging_centralised")),
    ("8", "**Basic alerting**", _m("alerts_configured")),
    ("8", "At minimum, you can detect:", _m("alerts_configured")),
    ("8", "Webhook failures.", _m("alerts_configured")),
    ("8", "Unusually high dispute volume.", _m("alerts_configured")),
    ("8", "Frequent early fraud warnings.", _m("alerts_configured")),
    ("9", "**Keys double-checked**", _c("stripe.key", "stripe.publishable_key", "config.mode_identifiers")),
    ("9", "Production environment uses live Stripe keys and webhook secret.",
     _c("stripe.key", "webhook.secrets", "config.mode_identifiers")),
    ("9", "No references to test keys remain in production configs.",
     _c("stripe.publishable_key", "config.mode_identifiers")),
    ("9", "**Test charge in live mode**", _m("live_test_charge")),
    ("9", "Complete a small real transaction in live mode.", _m("live_test_charge")),
    ("9", "Verify:", _m("live_test_charge")),
    ("9", "Subscription is active.", _m("live_test_charge")),
    ("9", "Internal dashboard reflects the subscription correctly.", _m("live_test_charge")),
    ("9", "Refund/portal flows work as expected.", _m("live_test_charge")),
    ("9", "**Ops sign-off**", _m("ops_signoff")),
    ("9", "Ops team confirms they can use Disputes and Fraud Warnings tools comfortably.", _m("ops_signoff")),
)


def _build() -> tuple[Box, ...]:
    boxes: list[Box] = []
    for runbook, rows in (("numzy", _NUMZY), ("alwrity", _ALWRITY)):
        position: dict[str, int] = {}
        for section, text, target in rows:
            position[section] = position.get(section, 0) + 1
            box_id = f"{runbook}:{section}:{position[section]}"
            kind, _, value = target.partition(":")
            if kind == "c":
                boxes.append(Box(box_id, runbook, section, text, checks=tuple(value.split(","))))  # type: ignore[arg-type]
            else:
                boxes.append(Box(box_id, runbook, section, text, manual=value))  # type: ignore[arg-type]
    return tuple(boxes)


BOXES: tuple[Box, ...] = _build()


def check_matches(pattern: str, check_id: str) -> bool:
    return check_id.startswith(pattern[:-1]) if pattern.endswith("*") else check_id == pattern
