"""The go-live checklist: the runbooks' items no machine can check, plus the rollback plan.

Items are seeded once (by key, so re-seeding never duplicates or overwrites
what people wrote) and edited by admins: owner, status, note; who and when
are stamped on every edit, and every edit is audited with before/after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.models import ChecklistItem
from db.models.base import utcnow
from db.repositories import checklist as checklist_rows
from db.session import UnitOfWork
from services.audit import privileged, record
from services.config import Settings
from services.errors import ConsoleError

STATUSES = ("open", "done", "n/a")
SECTIONS = {"ops_readiness": "Before launch (manual)", "after_launch": "Launch day and after (manual)",
            "rollback": "Rollback plan"}
# Sections whose open items hold the launch back (the runbook's "all blocking checklist items complete").
PRE_LAUNCH_SECTIONS = ("ops_readiness",)
MAX_NOTE_CHARS = 2000


@dataclass(frozen=True)
class SeedItem:
    key: str
    section: str
    title: str
    detail: str
    why: str  # why no machine can tick it (shown beside the runbook boxes it covers)


# The runbooks' boxes no preflight check can tick (services/runbook_boxes.py maps each box here).
SEED_ITEMS: tuple[SeedItem, ...] = (
    SeedItem("support_macros", "ops_readiness", "Support macros ready",
             "Replies for failed payments, SCA/3DS, plan changes, cancellations and refunds are in the helpdesk.",
             "The helpdesk is outside the console and Stripe."),
    SeedItem("rollback_owner", "ops_readiness", "Rollback owner named",
             "One named person decides and runs the rollback plan below during the first 24 hours.",
             "Naming a person is a decision, not a setting."),
    SeedItem("accounts_separate", "ops_readiness", "Separate test and live Stripe accounts",
             "A test-mode set-up exists beside the live one (its own keys, endpoint and price mapping).",
             "A key sees only its own mode; the other deployment's configuration is not visible from here."),
    SeedItem("tests_green", "ops_readiness", "Billing test suites green",
             "The backend and frontend billing suites passed on the commit being deployed.",
             "Test results live in CI, not in the deployed configuration."),
    SeedItem("shared_mapping_intent", "ops_readiness", "Shared price mapping only on purpose",
             "STRIPE_PLAN_PRICE_MAPPING (one mapping for both modes) is set only if that is intended.",
             "Whether sharing is intended is a decision; the preflight checks each mapped price's mode."),
    SeedItem("catalogue_intent", "ops_readiness", "Catalogue covers what will be sold",
             "Every tier and billing cycle you intend to offer (e.g. yearly) is mapped and exists.",
             "What you intend to sell is a product decision; the preflight checks each mapped price."),
    SeedItem("test_deployment_mapping", "ops_readiness", "Test deployments have their own mapping",
             "STRIPE_PLAN_PRICE_MAPPING_TEST is set on the test/staging deployments.",
             "Those are other deployments; this console reads only its own settings."),
    SeedItem("product_db", "ops_readiness", "Product database tables and plans",
             "The product backend's SubscriptionPlan rows (active per sellable tier) and usage tables exist.",
             "They live in the product backend's database, which the console does not read."),
    SeedItem("migration_process", "ops_readiness", "Migrations rehearsed on staging",
             "Migrations ran on staging and production follows the same process.",
             "Staging is another deployment and a process is a plan; db.migrated checks this database."),
    SeedItem("portal_tested", "ops_readiness", "Customer portal tried by hand",
             "Open the portal from the app: view invoices, update the card, cancel; note the configuration id.",
             "The portal is a Stripe-hosted browser flow; portal.configured checks its settings."),
    SeedItem("qa_matrix", "ops_readiness", "Plan-change QA matrix passed",
             "All 8 cases pass on the QA matrix page (new, upgrade, downgrade, reconciliation, SCA, past due, "
             "portal downgrade, cancel), including dunning and 3-D Secure.",
             "Cases create subscriptions and charge cards, and 3-D Secure needs a browser; a person starts the run "
             "and the QA matrix page records each result."),
    SeedItem("webhook_test_event", "ops_readiness", "Dashboard test event received",
             "Send a test event from the Dashboard; the Webhooks page shows it verified and handled.",
             "Sending a test event is a Dashboard button with no API."),
    SeedItem("ops_tools_verified", "ops_readiness", "Disputes and fraud-warning tools used once",
             "In production: list and open disputes, stage and submit evidence, accept; list EFWs, see fraud type "
             "and actionable flag, refund and ignore on test data.",
             "The page tests run in CI, not on the production deployment; a person confirms it there."),
    SeedItem("test_dispute_efw", "ops_readiness", "Test dispute and EFW flowed through",
             "A test dispute and a test early fraud warning (pm_card_createIssuerFraudRecord) appear and can be "
             "worked.", "Creating them charges a test card on purpose and a person judges the pages."),
    SeedItem("ops_trained_disputes", "ops_readiness", "Ops trained on disputes",
             "Ops have read the Ops Guide: how to respond to disputes and submit evidence before the due date.",
             "Training is a person's knowledge."),
    SeedItem("ops_trained_efw", "ops_readiness", "Ops trained on early fraud warnings",
             "Ops know when to proactively refund an EFW and when to escalate to engineering.",
             "Training is a person's knowledge."),
    SeedItem("checkout_rate_limit", "ops_readiness", "Checkout endpoint rate limited",
             "The product's create-checkout-session applies per-user limits and answers 429 with a log entry.",
             "That endpoint belongs to the product backend. With CHECKOUT_PROBE_URL (test/staging) `check` bursts it "
             "and reports the first 429 (checkout.rate_limit); per-user limits and the log entry stay for a person."),
    SeedItem("logging_centralised", "ops_readiness", "Logs centralised",
             "Backend logs (webhooks, disputes, fraud warnings, rate limiting) reach the logging service.",
             "The logging service is outside the console and Stripe."),
    SeedItem("apple_pay_domain", "ops_readiness", "Apple Pay / Google Pay render in production (if wallets at launch)",
             "Apple Pay and Google Pay are enabled in the Dashboard and Express Checkout renders on real devices; "
             "mark n/a if wallets are not launched.",
             "Rendering needs a real device and browser; wallets.domain checks the domain registration."),
    SeedItem("sentry_dashboard", "ops_readiness", "Sentry dashboard link recorded",
             "Paste the Sentry dashboard link in the note; confirm the preflight's test event arrived.",
             "Only a person can see the event arrive in Sentry's UI."),
    SeedItem("alerts_configured", "ops_readiness", "Alerts set up",
             "change.error rate, reconcile applied spike / consecutive errors, invoice failure % above baseline, "
             "webhook failures, dispute and EFW volume; a plan for 429/failed-payment spikes.",
             "Alert rules live in the alerting service."),
    SeedItem("secrets_in_manager", "ops_readiness", "Secrets only in the secret manager",
             "Live keys live only in the deployment's secret store.",
             "Where a value came from is not visible to the process; secrets.repo scans the repository."),
    SeedItem("tax_address", "ops_readiness", "Tax & address checked (if enabled)",
             "Address persisted on the Stripe customer; Stripe Tax present on a test invoice; n/a if tax is off.",
             "It needs a customer to enter an address in the browser; stripe.tax checks the account settings."),
    SeedItem("live_test_charge", "ops_readiness", "Small live-mode test charge done",
             "A small real transaction in live mode: subscription active, console shows it, refund/portal work. "
             "Run the Live smoke test on this page with the live key: a run where every step passes ticks this item.",
             "It spends real money, so a person starts it and pays; the console then checks each step and records "
             "the result."),
    SeedItem("ops_signoff", "ops_readiness", "Ops sign-off",
             "Ops confirm they can use the Disputes and Fraud warnings tools comfortably.",
             "Confidence is a person's statement."),
    SeedItem("metrics_present", "after_launch", "Metrics flowing",
             "The First 24h page shows webhook, subscription, reconcile, invoice, dunning and SCA figures.",
             "The figures exist only once real traffic flows; a person reads them on the First 24h page."),
    SeedItem("post_launch_watch", "after_launch", "First 24 hours watched",
             "New subscription success rate, reconcile.applied against expected downgrades, every change.error.",
             "It happens after launch and needs judgement; the First 24h page holds the figures."),
    SeedItem("signoff", "after_launch", "Launch signed off",
             "The engineering lead and the product owner sign on the Sign-off page (with the frozen snapshot).",
             "An approval must come from the named people; the Sign-off page records who and when."),
    SeedItem("rollback_disable_cron", "rollback", "Halt automated downgrades",
             "Pause the reconcile switch on Launch controls (or `billing-ops pause reconcile --reason ...`): every "
             "worker stops applying downgrades at its next poll. The runbook's RECONCILE_CRON_ENABLED=false still "
             "works but needs every worker restarted.",
             "A step to follow in an incident, not a state to check."),
    SeedItem("rollback_revert_image", "rollback", "Revert the deployment",
             "Redeploy the last known good image tag.", "A step to follow in an incident, not a state to check."),
    SeedItem("rollback_remove_endpoint", "rollback", "Pause webhook delivery if webhooks misbehave",
             "Pause the processing switch on Launch controls (or `billing-ops pause processing --reason ...`): "
             "deliveries are still stored and acknowledged, nothing is handled until you resume. Last resort only: "
             "remove the endpoint in the Dashboard, re-add it, then `billing-ops sync --days 3` to backfill.",
             "A step to follow in an incident, not a state to check."),
    SeedItem("rollback_manual_corrections", "rollback", "Manual corrections",
             "Correct a subscription under Manual correction on Launch controls: change the price, set or clear "
             "cancel at period end, or clear a pending plan; each shows before/after, is confirmed, sent once with "
             "its own idempotency key and audited. The Stripe Dashboard still works; the console picks the change "
             "up from the webhook.",
             "A step to follow in an incident, not a state to check."),
)
# Rollback items and the console control that performs them (shown with its live state).
ROLLBACK_CONTROLS = {"rollback_disable_cron": "switch:reconcile", "rollback_remove_endpoint": "switch:processing",
                     "rollback_manual_corrections": "page:Launch controls (Manual correction)"}
SEED_BY_KEY = {item.key: item for item in SEED_ITEMS}


class ChecklistError(ConsoleError):
    """An item edit was refused."""


def seed_checklist(uow: UnitOfWork) -> int:
    """Add the seed items that are missing; returns how many were added."""
    with uow:
        existing = checklist_rows.keys(uow)
        added = 0
        for item in SEED_ITEMS:
            if item.key not in existing:
                checklist_rows.add(uow, ChecklistItem(key=item.key, section=item.section, title=item.title,
                                                     detail=item.detail, status="open"))
                added += 1
        uow.commit()
        return added


def item_row(item: ChecklistItem) -> dict[str, Any]:
    seed = SEED_BY_KEY.get(item.key)
    return {
        "key": item.key, "section": seed.section if seed else item.section, "title": item.title,
        "detail": item.detail, "why": seed.why if seed else "",
        "owner": item.owner, "status": item.status, "note": item.note, "updated_by": item.updated_by,
        "updated_at": item.updated_at,
    }


def list_items(uow: UnitOfWork) -> list[dict[str, Any]]:
    order = {key: position for position, key in enumerate(SECTIONS)}
    with uow:
        items = checklist_rows.every(uow)
        return [item_row(i) for i in sorted(items, key=lambda i: (order.get(i.section, 99), i.id))]


def _clean(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:limit] if value else None


@privileged("checklist.update")
def update_item(
    item_key: str, *, owner: str | None, status: str, note: str | None, actor: str, settings: Settings,
    uow: UnitOfWork,
) -> dict[str, Any]:
    """Set owner/status/note of one item; stamps who and when; one audit row."""
    if status not in STATUSES:
        raise ChecklistError(f"Status must be one of {', '.join(STATUSES)}.")
    owner = _clean(owner, 255)
    note = _clean(note, MAX_NOTE_CHARS)
    with uow:
        item = checklist_rows.by_key(uow, item_key)
        if item is None:
            record(uow, actor=actor, action="checklist.update", result="error", target=f"checklist:{item_key}",
                   error="no such checklist item")
            uow.commit()
            raise ChecklistError("There is no such checklist item; reload the page.")
        if item.key == "rollback_owner" and status == "done" and not (owner or item.owner):
            raise ChecklistError("Name the rollback owner before marking this done.")
        before = {"owner": item.owner, "status": item.status, "note": item.note}
        item.owner, item.status, item.note = owner, status, note
        item.updated_by, item.updated_at = actor, utcnow()
        after = {"owner": owner, "status": status, "note": note}
        record(uow, actor=actor, action="checklist.update", result="ok", target=f"checklist:{item_key}",
               idempotency_key=f"checklist:{item_key}:{item.updated_at.isoformat()}",
               details={"before": before, "after": after})
        uow.commit()
        return item_row(item)
