"""The go-live checklist on SQLite and PostgreSQL: seeded once with the runbooks'
manual items and the rollback plan; edits stamp who/when and are audited;
bad input changes nothing; non-admins are denied."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import AuditLog, ChecklistItem
from db.session import UnitOfWork
from services.auth import AccessDenied
from services.checklist import SEED_ITEMS, ChecklistError, list_items, seed_checklist, update_item
from tests.integration.golive_fixtures import ADMIN, golive_settings


def test_seed_is_idempotent_and_keeps_edits(migrated_url: str) -> None:
    settings = golive_settings(migrated_url)
    assert seed_checklist(UnitOfWork(migrated_url)) == len(SEED_ITEMS)
    update_item("support_macros", owner="Sam", status="done", note="macros 1-12 live", actor=ADMIN,
                settings=settings, uow=UnitOfWork(migrated_url))
    assert seed_checklist(UnitOfWork(migrated_url)) == 0
    items = {i["key"]: i for i in list_items(UnitOfWork(migrated_url))}
    assert len(items) == len(SEED_ITEMS)
    assert items["support_macros"]["status"] == "done" and items["support_macros"]["updated_by"] == ADMIN
    assert items["support_macros"]["updated_at"] is not None
    titles = " ".join(i["title"] for i in items.values())
    for words in ("Support macros", "Rollback owner", "disputes", "early fraud warnings", "Apple Pay", "Sentry"):
        assert words in titles
    rollback = [i for i in list_items(UnitOfWork(migrated_url)) if i["section"] == "rollback"]
    details = " ".join(i["detail"] for i in rollback)
    assert "RECONCILE_CRON_ENABLED=false" in details and "image" in details and "endpoint" in details
    assert "Dashboard" in details
    # Rollback items come after the ops items on the page.
    assert list_items(UnitOfWork(migrated_url))[-1]["section"] == "rollback"


def test_edit_is_audited_with_before_and_after(migrated_url: str) -> None:
    settings = golive_settings(migrated_url)
    seed_checklist(UnitOfWork(migrated_url))
    update_item("rollback_owner", owner="Riley (eng)", status="done", note=None, actor=ADMIN, settings=settings,
                uow=UnitOfWork(migrated_url))
    with UnitOfWork(migrated_url) as uow:
        audit = uow.session.execute(select(AuditLog).where(AuditLog.action == "checklist.update")).scalars().all()
        assert len(audit) == 1
        assert (audit[0].actor, audit[0].result, audit[0].target) == (ADMIN, "ok", "checklist:rollback_owner")
        assert audit[0].details["before"]["status"] == "open"
        assert audit[0].details["after"] == {"owner": "Riley (eng)", "status": "done", "note": None}
        assert audit[0].idempotency_key


def test_bad_input_changes_nothing(migrated_url: str) -> None:
    settings = golive_settings(migrated_url)
    seed_checklist(UnitOfWork(migrated_url))
    with pytest.raises(ChecklistError, match="Status must be"):
        update_item("support_macros", owner=None, status="finished", note=None, actor=ADMIN, settings=settings,
                    uow=UnitOfWork(migrated_url))
    with pytest.raises(ChecklistError, match="Name the rollback owner"):
        update_item("rollback_owner", owner="  ", status="done", note=None, actor=ADMIN, settings=settings,
                    uow=UnitOfWork(migrated_url))
    with pytest.raises(ChecklistError, match="no such"):
        update_item("nope", owner=None, status="done", note=None, actor=ADMIN, settings=settings,
                    uow=UnitOfWork(migrated_url))
    with UnitOfWork(migrated_url) as uow:
        statuses = set(uow.session.execute(select(ChecklistItem.status)).scalars())
        assert statuses == {"open"}


def test_non_admin_is_denied(migrated_url: str) -> None:
    settings = golive_settings(migrated_url)
    seed_checklist(UnitOfWork(migrated_url))
    with pytest.raises(AccessDenied):
        update_item("support_macros", owner="x", status="done", note=None, actor="viewer@outside.io",
                    settings=settings, uow=UnitOfWork(migrated_url))
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.execute(select(AuditLog).where(AuditLog.action == "checklist.update")).scalar_one()
        assert (row.actor, row.result) == ("viewer@outside.io", "denied")
        item = uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == "support_macros")).scalar_one()
        assert item.status == "open" and item.owner is None


def test_db_upgrade_seeds_the_checklist_once(database_url: str, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: object) -> None:
    """The pages only read the checklist: `billing-ops db upgrade` (and `run`, the demo) seed it."""
    from click.testing import CliRunner

    from cli import main

    monkeypatch.chdir(str(tmp_path))  # no stray .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    first = CliRunner().invoke(main, ["db", "upgrade"], catch_exceptions=False)
    assert first.exit_code == 0 and f"{len(SEED_ITEMS)} go-live checklist item(s) added" in first.output
    assert len(list_items(UnitOfWork(database_url))) == len(SEED_ITEMS)
    again = CliRunner().invoke(main, ["db", "upgrade"], catch_exceptions=False)
    assert again.exit_code == 0 and "added" not in again.output


def test_signoff_readiness_reads_an_unseeded_checklist_as_open(migrated_url: str) -> None:
    """Readiness is shown on the Sign-off page, so it seeds nothing: a missing item counts as open."""
    from services.runtime import Runtime
    from services.signoff import readiness_reasons

    reasons = {reason.key for reason in readiness_reasons(Runtime(golive_settings(migrated_url)))}
    assert "checklist:rollback_owner" in reasons
    assert list_items(UnitOfWork(migrated_url)) == []  # still unseeded: nothing written
