"""The audit chain detects edits and deletions; the privileged guard records denials."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, select, update

from db.models import AuditLog
from db.session import UnitOfWork
from services import audit
from services.auth import AccessDenied
from services.config import load_settings

SETTINGS = load_settings({"ADMIN_EMAIL_DOMAIN": "example.com"}, env_file=None)


def _append(url: str, n: int) -> None:
    for i in range(n):
        with UnitOfWork(url) as uow:
            audit.record(uow, actor="ops@example.com", action="efw.refund", result="ok", target=f"issfr_{i}",
                         idempotency_key=f"refund:efw:issfr_{i}", details={"amount": 100 * i})
            uow.commit()


def test_intact_chain_verifies(migrated_url: str) -> None:
    _append(migrated_url, 5)
    result = audit.verify_chain(UnitOfWork(migrated_url))
    assert result.ok and result.rows_checked == 5


def test_edited_row_is_detected(migrated_url: str) -> None:
    _append(migrated_url, 5)
    with UnitOfWork(migrated_url) as uow:
        third = uow.session.execute(select(AuditLog).order_by(AuditLog.id).offset(2).limit(1)).scalar_one()
        uow.session.execute(update(AuditLog).where(AuditLog.id == third.id).values(result="denied"))
        uow.commit()
    result = audit.verify_chain(UnitOfWork(migrated_url))
    assert not result.ok and result.first_broken_id == third.id and "edited" in (result.problem or "")


def test_deleted_row_is_detected(migrated_url: str) -> None:
    _append(migrated_url, 5)
    with UnitOfWork(migrated_url) as uow:
        ids = list(uow.session.execute(select(AuditLog.id).order_by(AuditLog.id)).scalars())
        uow.session.execute(delete(AuditLog).where(AuditLog.id == ids[1]))
        uow.commit()
    result = audit.verify_chain(UnitOfWork(migrated_url))
    assert not result.ok and result.first_broken_id == ids[2] and "deleted" in (result.problem or "")


def test_concurrent_appends_keep_one_chain(migrated_url: str) -> None:
    threads = [threading.Thread(target=_append, args=(migrated_url, 10)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = audit.verify_chain(UnitOfWork(migrated_url))
    assert result.ok and result.rows_checked == 40


@audit.privileged("test.poke")
def _poke(target_id: str, *, actor: str, settings: object, uow: UnitOfWork) -> str:
    with uow:
        audit.record(uow, actor=actor, action="test.poke", result="ok", target=target_id)
        uow.commit()
    return "poked"


def test_privileged_guard_denies_and_records(migrated_url: str) -> None:
    for bad in ["viewer@outside.io", "admin@example.com.evil.io", "admin@sub.example.com", "", None, "a@b@example.com"]:
        with pytest.raises(AccessDenied):
            _poke("thing_1", actor=bad, settings=SETTINGS, uow=UnitOfWork(migrated_url))  # type: ignore[arg-type]
    assert _poke("thing_1", actor=" Admin@Example.com ", settings=SETTINGS, uow=UnitOfWork(migrated_url)) == "poked"
    with UnitOfWork(migrated_url) as uow:
        rows = uow.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars().all()
    assert [r.result for r in rows] == ["denied"] * 6 + ["ok"]
    assert all(r.target == "thing_1" and r.action == "test.poke" for r in rows)
    audit.PRIVILEGED_ACTIONS.pop("test.poke", None)
