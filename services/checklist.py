"""The go-live checklist: the runbooks' items no machine can check, plus the rollback plan.

Items are seeded once (by key, so re-seeding never duplicates or overwrites
what people wrote) and edited by admins: owner, status, note; who and when
are stamped on every edit, and every edit is audited with before/after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


# The runbooks' boxes no preflight check can tick (services/runbook_boxes.py maps each box here),
# kept as data beside this module: one entry per item, in the order the page lists them.
SEED_ITEMS: tuple[SeedItem, ...] = tuple(
    SeedItem(**entry) for entry in yaml.safe_load((Path(__file__).parent / "checklist_items.yaml").read_text())
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
