"""Reconciliation's guards on the billing DB (SQLite and PostgreSQL): it refuses to run without the
price mapping (one line, an audit row, no run stored), CLI dry-runs are recorded as dry-runs with
their trigger and never stand in for the last applied run, and findings are dismissed with a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from db.models import AuditLog, ReconcileAction, ReconcileRun
from db.session import UnitOfWork
from services import reconciliation
from services.auth import AccessDenied
from services.config import load_settings
from services.reconciliation import DRIFT_UNKNOWN_PRICE, ReconcileError, ReconcileRefused, run_reconciliation
from services.worker import run_worker
from tests.integration.reconcile_fixtures import ADMIN, NOW, FakeGateway, as_gateway, settings_for, subscription


def _unmapped(url: str) -> Any:
    return load_settings({"DATABASE_URL": url, "STRIPE_API_KEY": "sk_test_fake", "ADMIN_EMAILS": ADMIN,
                          "RECONCILE_CRON_ENABLED": "true"}, env_file=None)


def _runs(url: str) -> int:
    with UnitOfWork(url) as uow:
        return int(uow.session.execute(select(func.count()).select_from(ReconcileRun)).scalar() or 0)


def _refusals(url: str) -> list[AuditLog]:
    with UnitOfWork(url) as uow:
        return list(uow.session.execute(
            select(AuditLog).filter_by(action="reconcile.run", result="refused").order_by(AuditLog.id)).scalars())


@pytest.mark.parametrize("apply", [False, True])
def test_a_run_without_the_price_mapping_is_refused_and_stores_nothing(migrated_url: str, apply: bool) -> None:
    gateway = FakeGateway([subscription("sub_1")])
    with pytest.raises(ReconcileRefused) as refused:
        run_reconciliation(settings=_unmapped(migrated_url), uow=UnitOfWork(migrated_url),
                           gateway=as_gateway(gateway), apply=apply, actor="cli", trigger="cli", now=NOW)
    assert refused.value.message.startswith("Reconciliation refused: Required plans are not mapped to a price: "
                                            "basic.monthly, pro.monthly.")
    assert gateway.stats.requests == 0  # Stripe was never asked
    assert _runs(migrated_url) == 0
    [row] = _refusals(migrated_url)
    assert row.actor == "cli" and row.details["trigger"] == "cli"
    assert row.details["mode"] == ("apply" if apply else "dry-run")


def test_the_cron_is_refused_too_and_the_worker_says_so(migrated_url: str) -> None:
    from services.runtime import Runtime

    runtime = Runtime(_unmapped(migrated_url))
    runtime.__dict__["gateway"] = FakeGateway([subscription("sub_1")])
    lines: list[str] = []
    run_worker(runtime, once=True, echo=lines.append)
    assert any(line.startswith("Reconciliation refused: Required plans") for line in lines)
    assert _runs(migrated_url) == 0
    assert [r.details["trigger"] for r in _refusals(migrated_url)] == ["cron"]


def test_cli_refuses_in_one_line_and_records_its_dry_runs_as_cli(sqlite_url: str, monkeypatch: Any) -> None:
    from cli import main
    from db.migrate import upgrade

    upgrade(sqlite_url)
    monkeypatch.chdir(Path(sqlite_url.removeprefix("sqlite:///")).parent)
    for key, value in {"DATABASE_URL": sqlite_url, "STRIPE_API_KEY": "sk_test_fake", "STRIPE_MODE": "test",
                       "STRIPE_API_BASE": "http://127.0.0.1:9", "STRIPE_MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(key, value)
    for key in ("STRIPE_PRICE_BASIC_MONTHLY", "STRIPE_PRICE_PRO_MONTHLY", "STRIPE_PLAN_PRICE_MAPPING_TEST"):
        monkeypatch.delenv(key, raising=False)
    result = CliRunner().invoke(main, ["reconcile", "--json"])
    assert result.exit_code == 4
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Reconciliation refused: Required plans are not mapped")
    assert _runs(sqlite_url) == 0 and len(_refusals(sqlite_url)) == 1


def test_a_dry_run_never_replaces_the_last_applied_run(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([subscription("sub_due", cancel_at_period_end=True, pending_plan="basic",
                                        period_end=NOW + 600),
                           subscription("sub_legacy", price="price_legacy_2019")])
    applied = run_reconciliation(settings=settings, uow=UnitOfWork(migrated_url), gateway=as_gateway(gateway),
                                 apply=True, actor="cron", trigger="cron", now=NOW)
    dry = run_reconciliation(settings=settings, uow=UnitOfWork(migrated_url), gateway=as_gateway(gateway),
                             apply=False, actor="cli", trigger="cli", now=NOW)
    last_applied = reconciliation.last_run(UnitOfWork(migrated_url), mode="apply")
    latest_dry = reconciliation.last_run(UnitOfWork(migrated_url), mode="dry-run")
    assert last_applied is not None and latest_dry is not None
    assert (last_applied["run"], last_applied["trigger"], last_applied["applied"]) == (applied.run_id, "cron", 1)
    assert (latest_dry["run"], latest_dry["mode"], latest_dry["trigger"]) == (dry.run_id, "dry-run", "cli")
    assert {r["run"] for r in reconciliation.latest_drift(UnitOfWork(migrated_url))} == {applied.run_id}


def test_a_finding_is_dismissed_with_a_reason_audited_and_hidden(migrated_url: str) -> None:
    settings = settings_for(migrated_url)
    gateway = FakeGateway([subscription("sub_legacy", price="price_legacy_2019")])
    run_reconciliation(settings=settings, uow=UnitOfWork(migrated_url), gateway=as_gateway(gateway), apply=True,
                       actor="cron", trigger="cron", now=NOW)
    findings = reconciliation.latest_drift(UnitOfWork(migrated_url))
    [unknown] = [f for f in findings if f["kind"] == DRIFT_UNKNOWN_PRICE]
    assert unknown["fixable"] is False  # no "Apply fix" for it
    kw: dict[str, Any] = {"settings": settings, "uow": UnitOfWork(migrated_url)}
    with pytest.raises(AccessDenied):
        reconciliation.dismiss_finding(unknown["action"], "legacy price on purpose", actor="x@outside.io", **kw)
    with pytest.raises(ReconcileError, match="Write why"):
        reconciliation.dismiss_finding(unknown["action"], "  ok ", actor=ADMIN, **kw)
    reconciliation.dismiss_finding(unknown["action"], "Legacy 2019 price kept on purpose", actor=ADMIN, **kw)
    assert not [f for f in reconciliation.latest_drift(UnitOfWork(migrated_url)) if f["kind"] == DRIFT_UNKNOWN_PRICE]
    [shown] = [f for f in reconciliation.latest_drift(UnitOfWork(migrated_url), include_dismissed=True)
               if f["kind"] == DRIFT_UNKNOWN_PRICE]
    assert shown["result"] == "dismissed" and shown["dismissed"] == f"{ADMIN}: Legacy 2019 price kept on purpose"
    with UnitOfWork(migrated_url) as uow:
        row = uow.session.get(ReconcileAction, unknown["action"])
        assert row is not None and row.after["dismissed_reason"] == "Legacy 2019 price kept on purpose"
        results = [e.result for e in uow.session.execute(
            select(AuditLog).filter_by(action="reconcile.dismiss_finding").order_by(AuditLog.id)).scalars()]
    assert results == ["denied", "refused", "ok"]
    assert gateway.updates == []
