"""The go-live checklist: the runbooks' items no machine can check, plus the rollback plan.

Items are seeded once (by key, so re-seeding never duplicates or overwrites
what people wrote) and edited by admins: owner, status, note; who and when
are stamped on every edit, and every edit is audited with before/after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from db.models import ChecklistItem
from db.models.base import utcnow
from db.session import UnitOfWork
from services.audit import privileged, record
from services.config import Settings

STATUSES = ("open", "done", "n/a")
SECTIONS = {"ops_readiness": "Ops readiness (manual)", "rollback": "Rollback plan"}
MAX_NOTE_CHARS = 2000


@dataclass(frozen=True)
class SeedItem:
    key: str
    section: str
    title: str
    detail: str


# From the go-live checklist (sections 5, 6, 9) and the runbook (sections 1, 11, 12, 14).
SEED_ITEMS: tuple[SeedItem, ...] = (
    SeedItem("support_macros", "ops_readiness", "Support macros ready",
             "Replies for failed payments, SCA/3DS, plan changes, cancellations and refunds are in the helpdesk."),
    SeedItem("rollback_owner", "ops_readiness", "Rollback owner named",
             "One named person decides and runs the rollback plan below during the first 24 hours."),
    SeedItem("ops_trained_disputes", "ops_readiness", "Ops trained on disputes",
             "Ops have read the Ops Guide: how to respond to disputes and submit evidence before the due date."),
    SeedItem("ops_trained_efw", "ops_readiness", "Ops trained on early fraud warnings",
             "Ops know when to proactively refund an EFW and when to escalate to engineering."),
    SeedItem("apple_pay_domain", "ops_readiness", "Apple Pay domain registered (if wallets at launch)",
             "The domain association file is served from /.well-known/apple-developer-merchantid-domain-association "
             "and Apple/Google Pay are enabled in the Dashboard; mark n/a if wallets are not launched."),
    SeedItem("sentry_dashboard", "ops_readiness", "Sentry dashboard link recorded",
             "Paste the Sentry dashboard link in the note; Sentry receives test events."),
    SeedItem("alerts_configured", "ops_readiness", "Alerts set up",
             "change.error rate, reconcile applied spike / consecutive errors, invoice failure % above baseline."),
    SeedItem("secrets_in_manager", "ops_readiness", "Secrets only in the secret manager",
             "No Stripe key is committed to the repo; live keys live only in the deployment's secret store."),
    SeedItem("tax_address", "ops_readiness", "Tax & address checked (if enabled)",
             "Address persisted on the Stripe customer; Stripe Tax present on a test invoice; n/a if tax is off."),
    SeedItem("live_test_charge", "ops_readiness", "Small live-mode test charge done",
             "A small real transaction in live mode: subscription active, console shows it, refund/portal work."),
    SeedItem("rollback_disable_cron", "rollback", "Halt automated downgrades",
             "Set RECONCILE_CRON_ENABLED=false and restart the worker (`billing-ops worker`)."),
    SeedItem("rollback_revert_image", "rollback", "Revert the deployment",
             "Redeploy the last known good image tag."),
    SeedItem("rollback_remove_endpoint", "rollback", "Pause webhook delivery if webhooks misbehave",
             "Temporarily remove (or disable) the webhook endpoint in the Dashboard; Stripe retries events for a "
             "while. Re-add it, then run `billing-ops sync --days 3` to backfill."),
    SeedItem("rollback_manual_corrections", "rollback", "Manual corrections",
             "Correct subscriptions in the Stripe Dashboard (customer.subscription.update); the console picks the "
             "change up from the webhook."),
)


class ChecklistError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def seed_checklist(uow: UnitOfWork) -> int:
    """Add the seed items that are missing; returns how many were added."""
    with uow:
        existing = set(uow.session.execute(select(ChecklistItem.key)).scalars())
        added = 0
        for item in SEED_ITEMS:
            if item.key not in existing:
                uow.session.add(ChecklistItem(key=item.key, section=item.section, title=item.title,
                                              detail=item.detail, status="open"))
                added += 1
        uow.commit()
        return added


def item_row(item: ChecklistItem) -> dict[str, Any]:
    return {
        "key": item.key, "section": item.section, "title": item.title, "detail": item.detail,
        "owner": item.owner, "status": item.status, "note": item.note, "updated_by": item.updated_by,
        "updated_at": item.updated_at,
    }


def list_items(uow: UnitOfWork) -> list[dict[str, Any]]:
    order = {key: position for position, key in enumerate(SECTIONS)}
    with uow:
        items = list(uow.session.execute(select(ChecklistItem).order_by(ChecklistItem.id)).scalars())
        return [item_row(i) for i in sorted(items, key=lambda i: (order.get(i.section, 99), i.id))]


def open_items(uow: UnitOfWork) -> list[dict[str, Any]]:
    return [item for item in list_items(uow) if item["status"] == "open"]


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
        item = uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == item_key)).scalar_one_or_none()
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
