"""The privileged guard lets a caller through on its own authority only when it says so
with a `SystemCaller` value: the same name as a plain string is checked like any visitor."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import AuditLog
from services.audit import SystemCaller
from services.auth import AccessDenied
from services.config import load_settings
from services.runtime import Runtime
from services.switches import pause_switch, resume_switch, switch_state

REPO_ROOT = Path(__file__).resolve().parents[2]


def _runtime(url: str) -> Runtime:
    return Runtime(load_settings({"DATABASE_URL": url, "ADMIN_EMAILS": "admin@example.com",
                                  "STRIPE_API_KEY": "sk_test_system_caller"}, env_file=None))


def test_a_plain_name_is_checked_and_an_explicit_system_caller_passes(migrated_sqlite_url: str) -> None:
    runtime = _runtime(migrated_sqlite_url)
    with pytest.raises(AccessDenied):
        pause_switch("reconcile", reason="a plain 'cli' is a visitor", actor="cli", settings=runtime.settings,
                     uow=runtime.uow())
    assert not switch_state(runtime.uow(), "reconcile").paused

    state = pause_switch("reconcile", reason="holding downgrades", actor=SystemCaller("cli"),
                         settings=runtime.settings, uow=runtime.uow())
    assert state.paused and state.by == "cli"
    resume_switch("reconcile", actor=SystemCaller("cli"), settings=runtime.settings, uow=runtime.uow())
    assert not switch_state(runtime.uow(), "reconcile").paused

    with runtime.uow() as uow:
        rows = [(r.actor, r.action, r.result) for r in uow.session.execute(
            select(AuditLog).where(AuditLog.action.like("switch.%")).order_by(AuditLog.id)).scalars()]
    assert rows == [("cli", "switch.pause", "denied"), ("cli", "switch.pause", "ok"), ("cli", "switch.resume", "ok")]


def test_pages_never_claim_system_authority() -> None:
    page_sources = [*sorted((REPO_ROOT / "app_pages").glob("*.py")), REPO_ROOT / "app.py"]
    assert len(page_sources) > 5
    claiming = [p.name for p in page_sources if "SystemCaller" in p.read_text(encoding="utf-8")]
    assert claiming == []
