"""Kill switches (issue 24, part 1) on SQLite and PostgreSQL: shared through the DB, obeyed
by the receiver (stores and acknowledges, processes nothing), the worker (drains the backlog
in Stripe's order, exactly once, on resume) and reconciliation (cron skips, apply refused,
dry-run allowed); reasons required, everything audited; `status --json` from a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient

from db.models import AuditLog, ReconcileRun, StripeEvent
from db.models.base import utcnow
from services import event_handlers, metrics, switches, webhooks
from services.audit import SystemCaller
from services.reconciliation import run_reconcile_cron, run_reconciliation
from tests.conftest import REPO_ROOT, TEST_WEBHOOK_SECRETS
from tests.integration.test_webhook_pipeline import event_body, sign
from webhooks.app import create_app

MAPPING = {"STRIPE_PRICE_BASIC_MONTHLY": "price_basic_monthly", "STRIPE_PRICE_PRO_MONTHLY": "price_pro_monthly"}


@pytest.fixture
def switch_runtime(runtime_factory: Any, migrated_url: str) -> Any:
    # Mapped: an unmapped reconcile is refused for its configuration before the switch is asked.
    return runtime_factory(DATABASE_URL=migrated_url, RECONCILE_CRON_ENABLED="true", **MAPPING)


def _audit(runtime: Any, action: str) -> list[tuple[str, str, str | None]]:
    with runtime.uow() as uow:
        return [(r.actor, r.result, r.error) for r in uow.session.execute(
            select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).scalars()]


def _deliver(client: TestClient, event_id: str, created: int) -> None:
    body = json.loads(event_body(event_id, "invoice.paid"))
    body["created"] = created
    raw = json.dumps(body).encode()
    response = client.post("/billing/webhook", content=raw,
                           headers={"Stripe-Signature": sign(raw, TEST_WEBHOOK_SECRETS[0])})
    assert response.status_code == 200 and response.json()["status"] == "stored"


def test_paused_processing_holds_every_delivery_then_drains_in_order_once(
        switch_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[str] = []
    monkeypatch.setattr(event_handlers, "handle_event",
                        lambda uow, payload, runtime, refetch=True: handled.append(payload["id"]))
    switches.pause_switch("processing", reason="Handlers misbehave on launch day",
                          actor=SystemCaller("ops@example.com"), settings=switch_runtime.settings,
                          uow=switch_runtime.uow())
    now = int(time.time())
    with TestClient(create_app(switch_runtime)) as client:
        # Delivered out of order; Stripe's order is `created`.
        for event_id, created in [("evt_c", now - 10), ("evt_a", now - 30), ("evt_b", now - 20)]:
            _deliver(client, event_id, created)
    assert webhooks.process_pending(switch_runtime) == 0
    assert webhooks.process_event(switch_runtime, "evt_a") is False
    assert handled == []
    backlog = switches.backlog(switch_runtime.uow())
    assert backlog["events"] == 3 and backlog["oldest_age_seconds"] is not None
    with pytest.raises(switches.Paused, match="paused by ops@example.com"):
        webhooks.replay_event("evt_a", actor="admin@example.com", settings=switch_runtime.settings,
                              uow=switch_runtime.uow(), runtime=switch_runtime)

    switches.resume_switch("processing", actor=SystemCaller("ops@example.com"),
                           settings=switch_runtime.settings, uow=switch_runtime.uow())
    assert webhooks.process_pending(switch_runtime) == 3
    assert webhooks.process_pending(switch_runtime) == 0
    assert handled == ["evt_a", "evt_b", "evt_c"]
    with switch_runtime.uow() as uow:
        assert {r.status for r in uow.session.execute(select(StripeEvent)).scalars()} == {"processed"}
    assert switches.backlog(switch_runtime.uow())["events"] == 0
    assert [r[1] for r in _audit(switch_runtime, "switch.pause")] == ["ok"]
    assert [r[1] for r in _audit(switch_runtime, "switch.resume")] == ["ok"]
    assert _audit(switch_runtime, "webhooks.replay")[-1][1] == "refused"


def test_paused_reconcile_skips_the_cron_and_refuses_apply_but_not_dry_run(switch_runtime: Any) -> None:
    switches.pause_switch("reconcile", reason="Downgrades applied twice in staging",
                          actor=SystemCaller("lead@example.com"), settings=switch_runtime.settings,
                          uow=switch_runtime.uow())
    assert run_reconcile_cron(switch_runtime, holder="worker-1") is None
    with switch_runtime.uow() as uow:
        skipped = uow.session.execute(select(ReconcileRun)).scalar_one()
    assert skipped.mode == "skipped" and skipped.examined == 0
    assert "paused by lead@example.com" in (skipped.error or "") and "applied twice" in (skipped.error or "")
    with pytest.raises(switches.Paused, match="paused by lead@example.com.*Downgrades applied twice"):
        run_reconciliation(settings=switch_runtime.settings, uow=switch_runtime.uow(),
                           gateway=switch_runtime.gateway, apply=True, actor="cli", trigger="manual")
    assert _audit(switch_runtime, "reconcile.apply")[-1][1] == "refused"
    dry = run_reconciliation(settings=switch_runtime.settings, uow=switch_runtime.uow(),
                             gateway=switch_runtime.gateway, apply=False, actor="cli", trigger="manual")
    assert dry.mode == "dry-run"


def test_reasons_are_required_and_refusals_audited(switch_runtime: Any) -> None:
    with pytest.raises(switches.SwitchError, match="needs a reason"):
        switches.pause_switch("processing", reason="  ", actor=SystemCaller("cli"),
                              settings=switch_runtime.settings, uow=switch_runtime.uow())
    with pytest.raises(switches.SwitchError, match="not paused"):
        switches.resume_switch("reconcile", actor=SystemCaller("cli"),
                               settings=switch_runtime.settings, uow=switch_runtime.uow())
    switches.pause_switch("processing", reason="incident 42", actor=SystemCaller("cli"),
                          settings=switch_runtime.settings, uow=switch_runtime.uow())
    with pytest.raises(switches.SwitchError, match="already paused by cli"):
        switches.pause_switch("processing", reason="again", actor=SystemCaller("x"),
                              settings=switch_runtime.settings, uow=switch_runtime.uow())
    with pytest.raises(switches.SwitchError, match="Unknown switch"):
        switches.switch_state(switch_runtime.uow(), "everything")
    assert [r[1] for r in _audit(switch_runtime, "switch.pause")] == ["refused", "ok", "refused"]
    assert [r[1] for r in _audit(switch_runtime, "switch.resume")] == ["refused"]


def test_a_switch_left_on_fires_an_alert_after_the_configured_time(switch_runtime: Any) -> None:
    switches.pause_switch("reconcile", reason="holding downgrades", actor=SystemCaller("cli"),
                          settings=switch_runtime.settings, uow=switch_runtime.uow())
    settings = switch_runtime.settings
    soon = utcnow() + timedelta(minutes=settings.alert_switch_paused_minutes - 1)
    later = utcnow() + timedelta(minutes=settings.alert_switch_paused_minutes + 1)

    def keys(moment: datetime) -> list[str]:
        return [a.key for a in metrics.active_alerts(switch_runtime.uow(), settings=settings, now=moment)]

    assert "switch_paused_reconcile" not in keys(soon)
    assert "switch_paused_reconcile" in keys(later)


def test_cli_pause_status_resume_from_a_subprocess(migrated_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DATABASE_"))}
    env.update(DATABASE_URL=migrated_url, PYTHONPATH=str(REPO_ROOT))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)

    refused = cli("pause", "processing", "--reason", "")
    assert refused.returncode == 4 and "needs a reason" in refused.stderr
    paused = cli("pause", "processing", "--reason", "Bad deploy, holding events", "--actor", "ops@example.com")
    assert paused.returncode == 0, paused.stderr
    report = json.loads(cli("status", "--json").stdout)
    assert set(report) == {"processing", "reconcile", "backlog"}
    assert report["processing"]["paused"] is True and report["processing"]["by"] == "ops@example.com"
    assert report["processing"]["reason"] == "Bad deploy, holding events"
    assert report["processing"]["since"].endswith("+00:00")
    assert report["reconcile"] == {"paused": False, "by": None, "reason": None, "since": None}
    assert report["backlog"] == {"events": 0, "oldest_age_seconds": None}
    assert cli("resume", "processing").returncode == 0
    assert json.loads(cli("status", "--json").stdout)["processing"]["paused"] is False


def test_cli_reconcile_apply_is_one_line_while_paused(switch_runtime: Any) -> None:
    from cli import main

    switches.pause_switch("reconcile", reason="holding downgrades", actor=SystemCaller("cli"),
                          settings=switch_runtime.settings, uow=switch_runtime.uow())
    env = {"DATABASE_URL": switch_runtime.settings.database_url,
           "STRIPE_API_KEY": switch_runtime.settings.stripe_secret,
           "STRIPE_API_BASE": str(switch_runtime.settings.stripe_api_base), **MAPPING}
    result = CliRunner().invoke(main, ["reconcile", "--apply"], env=env)
    assert result.exit_code == 4, result.output
    assert result.output.strip().count("\n") == 0 and "paused by cli" in result.output
