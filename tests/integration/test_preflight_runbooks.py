"""The checks added for the runbooks' remaining machine-checkable boxes, each passing
and failing on the Stripe emulator through `billing-ops check` (or the same runtime):
publishable key, Stripe Tax, wallet domain, worker metrics, exact webhook events and
URL, test identifiers in a live set-up, committed secrets, the Sentry test event and
admin look-alikes; and the per-box mapping that `check --json` carries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import select

from db.models import AuditLog
from services.config import CONSOLE_EVENT_TYPES, load_settings
from services.preflight import run_preflight
from services.runtime import Runtime
from tests.conftest import TEST_API_KEY, EmulatorHandle
from tests.integration.conftest import create_endpoint as _create_endpoint
from tests.integration.golive_fixtures import LocalHttp
from tests.integration.test_preflight_cli import _run_check

LIVE_KEY = "sk_live_CANARYlive0123456789abcdef"
LEAKED = "sk_live_" + "Q" * 40


def _checks(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, Any]], dict[str, Any]]:
    result = _run_check(env, "--json", *args)
    report = json.loads(result.stdout)  # log lines go to stderr
    return result.exit_code, {c["id"]: c for c in report["checks"]}, report


def _client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient(TEST_API_KEY, base_addresses={"api": emulator.base_url}, max_network_retries=0)


# --- publishable key ------------------------------------------------------------------------------
def test_publishable_key_present_same_mode(check_env: dict[str, str]) -> None:
    code, checks, _ = _checks(check_env)
    assert code == 0 and checks["stripe.publishable_key"]["passed"]
    assert "pk_test_…" in checks["stripe.publishable_key"]["message"]
    _, missing, _ = _checks({**check_env, "STRIPE_PUBLISHABLE_KEY": ""})
    assert not missing["stripe.publishable_key"]["passed"]
    assert missing["stripe.publishable_key"]["severity"] == "warning"  # blocking only in live mode
    code, wrong, _ = _checks({**check_env, "STRIPE_PUBLISHABLE_KEY": "pk_live_CANARYpublishable0123"})
    assert code == 1 and wrong["stripe.publishable_key"]["severity"] == "blocking"
    assert "pk_live_…" in wrong["stripe.publishable_key"]["message"]


# --- Stripe Tax -------------------------------------------------------------------------------------
def test_automatic_tax_needs_stripe_tax_active(check_env: dict[str, str], emulator: EmulatorHandle) -> None:
    _, off, _ = _checks(check_env)
    assert off["stripe.tax"]["passed"] and "off" in off["stripe.tax"]["message"]
    env = {**check_env, "STRIPE_AUTOMATIC_TAX_ENABLED": "true"}
    _, pending, _ = _checks(env)
    tax = pending["stripe.tax"]
    assert not tax["passed"] and "pending" in tax["message"] and "head_office" in tax["message"]
    assert "head office" in tax["fix"]
    _client(emulator).v1.tax.settings.update({"head_office": {"address": {"country": "US", "state": "CA"}}})
    _, active, _ = _checks(env)
    assert active["stripe.tax"]["passed"] and "CA, US" in active["stripe.tax"]["message"]


# --- wallets ------------------------------------------------------------------------------------------
def test_wallets_need_a_registered_active_domain(check_env: dict[str, str], emulator: EmulatorHandle) -> None:
    env = {**check_env, "STRIPE_WALLETS_ENABLED": "true"}
    _, unregistered, _ = _checks(env)
    assert not unregistered["wallets.domain"]["passed"]
    assert "billing.example.com is not registered" in unregistered["wallets.domain"]["message"]
    client = _client(emulator)
    domain = client.v1.payment_method_domains.create({"domain_name": "billing.example.com"})
    _, registered, _ = _checks(env)
    assert registered["wallets.domain"]["passed"], registered["wallets.domain"]
    emulator.admin(f"payment_method_domains/{domain.id}/set",
                   {"apple_pay": "inactive", "error_message": "The domain association file was not found."})
    _, apple_off, _ = _checks(env)
    assert not apple_off["wallets.domain"]["passed"]
    assert "Apple Pay is inactive (The domain association file was not found.)" in apple_off["wallets.domain"][
        "message"]
    client.v1.payment_method_domains.update(domain.id, {"enabled": False})
    _, disabled, _ = _checks({**env, "STRIPE_PAYMENT_METHOD_DOMAIN": "billing.example.com"})
    assert "the domain is disabled" in disabled["wallets.domain"]["message"]


# --- worker / receiver metrics -------------------------------------------------------------------
def test_metrics_reachable_when_enabled(check_env: dict[str, str]) -> None:
    from services.prometheus import exposition

    ours, other, down = LocalHttp(metrics_body=exposition()), LocalHttp(metrics_body=b"up 1\n"), LocalHttp()
    try:
        env = {**check_env, "DRAMATIQ_PROMETHEUS_ENABLED": "true"}
        _, good, _ = _checks({**env, "METRICS_URLS": ours.base_url + "/metrics"})
        assert good["metrics.reachable"]["passed"]
        _, wrong, _ = _checks({**env, "METRICS_URLS": f"{ours.base_url}/metrics,{other.base_url}/metrics,"
                                                      f"{down.base_url}/metrics"})
        message = wrong["metrics.reachable"]["message"]
        assert not wrong["metrics.reachable"]["passed"] and wrong["metrics.reachable"]["severity"] == "warning"
        assert "no stripe_webhook_deliveries metric" in message and "HTTP 404" in message
    finally:
        for server in (ours, other, down):
            server.stop()


# --- webhook endpoint: exact events, URL shape, one endpoint ---------------------------------------
def test_webhook_events_must_equal_the_allowlist(check_env: dict[str, str]) -> None:
    _, exact, _ = _checks(check_env)
    assert exact["webhook.events"]["passed"] and "exactly" in exact["webhook.events"]["message"]
    other = "https://billing.example.com/api/subscription/webhook"
    _create_endpoint(check_env, [*CONSOLE_EVENT_TYPES, "customer.created"], "extra", url=other)
    code, extra, _ = _checks({**check_env, "CONSOLE_WEBHOOK_URL": other})
    assert code == 0  # extra events only warn in test mode
    assert not extra["webhook.events"]["passed"] and "customer.created" in extra["webhook.events"]["message"]
    narrower = ",".join(t for t in CONSOLE_EVENT_TYPES if t != "charge.failed") + ",product.created"
    _, both, _ = _checks({**check_env, "STRIPE_WEBHOOK_ALLOWED_EVENTS": narrower})
    assert "product.created" in both["webhook.events"]["message"]  # missing from the endpoint


@pytest.mark.parametrize(("url", "words"), [
    ("http://billing.example.com/billing/webhook", "not https"),
    ("https://billing.example.com/hooks/stripe", "is not /billing/webhook or /api/subscription/webhook"),
])
def test_webhook_url_is_https_and_the_console_path(check_env: dict[str, str], url: str, words: str) -> None:
    _create_endpoint(check_env, list(CONSOLE_EVENT_TYPES), f"url-{words}", url=url)
    _, checks, _ = _checks({**check_env, "CONSOLE_WEBHOOK_URL": url})
    assert not checks["webhook.url"]["passed"] and words in checks["webhook.url"]["message"]
    _, good, _ = _checks(check_env)
    assert good["webhook.url"]["passed"] and good["webhook.duplicates"]["passed"]
    assert "Exactly 1 endpoint" in good["webhook.duplicates"]["message"]


def test_receiver_paths_match_the_check() -> None:
    from services.preflight_settings import CONSOLE_WEBHOOK_PATHS
    from webhooks.app import WEBHOOK_PATHS

    assert tuple(WEBHOOK_PATHS) == CONSOLE_WEBHOOK_PATHS


# --- test identifiers in a live configuration ------------------------------------------------------------
def test_test_mode_identifiers_in_a_live_configuration(check_env: dict[str, str]) -> None:
    _, test_mode, _ = _checks(check_env)
    assert test_mode["config.mode_identifiers"]["passed"]
    live = {**check_env, "STRIPE_MODE": "live", "STRIPE_API_KEY": LIVE_KEY, "RECONCILE_CRON_ENABLED": "true",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_publishable0123456789",
            "STRIPE_PLAN_PRICE_MAPPING_LIVE": check_env["STRIPE_PLAN_PRICE_MAPPING_TEST"]}
    code, checks, _ = _checks(live)
    check = checks["config.mode_identifiers"]
    assert code == 1 and not check["passed"] and check["severity"] == "blocking"
    assert "publishable key pk_test_…" in check["message"] and "livemode false" in check["message"]
    assert "webhook endpoint we_" in check["message"]
    assert "CANARY" not in json.dumps(checks)


# --- committed secrets ------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout


def test_repo_scan_reports_file_and_commit_never_the_secret(check_env: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / "deploy"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README.md").write_text("Set STRIPE_API_KEY=sk_live_... in the secret manager.\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "docs")
    code, clean, _ = _checks(check_env, "--repo", str(repo))
    assert clean["secrets.repo"]["passed"], clean["secrets.repo"]  # a placeholder is not a secret
    (repo / "prod.env").write_text(f"STRIPE_API_KEY={LEAKED}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "oops")
    leak_commit = _git(repo, "rev-parse", "HEAD").strip()
    _git(repo, "rm", "-q", "prod.env")
    _git(repo, "commit", "-qm", "remove")
    result = _run_check(check_env, "--repo", str(repo))
    assert result.exit_code == 1 and LEAKED not in result.output and LEAKED[8:20] not in result.output
    code, leaked, _ = _checks(check_env, "--repo", str(repo))
    message = leaked["secrets.repo"]["message"]
    assert code == 1 and leaked["secrets.repo"]["severity"] == "blocking"
    assert f"prod.env:1 (commit {leak_commit[:12]})" in message and "sk_live_…(48 chars)" in message
    _, unscanned, _ = _checks(check_env)
    assert not unscanned["secrets.repo"]["passed"] and unscanned["secrets.repo"]["severity"] == "warning"


# --- Sentry test event ----------------------------------------------------------------------------------
def test_sentry_test_event_sent_with_tag_and_id(check_env: dict[str, str], sentry_ingest: LocalHttp) -> None:
    _, checks, _ = _checks(check_env)
    check = checks["observability.sentry_test_event"]
    assert check["passed"], check
    event_id = check["message"].split("Test event ")[1].split()[0]
    envelope = b"\n".join(sentry_ingest.envelopes).decode()
    assert event_id in envelope and '"billing_ops.preflight":"test_event"' in envelope
    sentry_ingest.status = 500
    _, refused, _ = _checks(check_env)
    assert not refused["observability.sentry_test_event"]["passed"]
    assert "status_500" in refused["observability.sentry_test_event"]["message"]
    _, no_dsn, _ = _checks({**check_env, "SENTRY_DSN": ""})
    assert "observability.sentry_test_event" not in no_dsn


# --- admin look-alikes ------------------------------------------------------------------------------------
def test_admin_lookalikes(check_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**check_env, "ADMIN_EMAIL_DOMAIN": "example.com"}
    _, exact, _ = _checks(env)
    assert exact["auth.lookalikes"]["passed"] and "None of" in exact["auth.lookalikes"]["message"]
    # A subdomain address listed as an admin is reported: it is one of the look-alikes.
    code, listed, _ = _checks({**env, "ADMIN_EMAILS": "admin@example.com,admin@sub.example.com"})
    assert code == 1 and "'admin@sub.example.com'" in listed["auth.lookalikes"]["message"]
    # A suffix-matching admin rule (the classic bug) lets several look-alikes in.
    import services.admin_lookalikes as lookalikes

    monkeypatch.setattr(lookalikes, "is_admin",
                        lambda email, settings: bool(email) and str(email).strip().lower().endswith("example.com"))
    _, naive, _ = _checks(env)
    assert "admin@evil-example.com" in naive["auth.lookalikes"]["message"]


# --- the per-box mapping and the recorded run ----------------------------------------------------
def test_json_carries_every_box_and_the_run_is_recorded(check_env: dict[str, str]) -> None:
    from services.checklist import seed_checklist, update_item

    _, _, report = _checks(check_env)
    boxes = {b["box"]: b for b in report["boxes"]}
    assert len(boxes) == 192
    tax = boxes["numzy:2:9"]
    assert tax["ticked_by"] == "machine" and tax["checks"] == ["stripe.tax"] and tax["result"] == "PASS"
    assert tax["ran_at"] == report["ran_at"]
    qa = boxes["numzy:6:1"]
    assert qa["ticked_by"] == "person" and qa["status"] == "open" and qa["ticked_by_who"] is None
    assert "charge cards" in qa["why_manual"]
    settings = load_settings(check_env, env_file=None)
    runtime = Runtime(settings)
    seed_checklist(runtime.uow())
    update_item("qa_matrix", owner="PO", status="done", note="8/8", actor="admin@example.com", settings=settings,
                uow=runtime.uow())
    _, _, again = _checks(check_env)
    ticked = {b["box"]: b for b in again["boxes"]}["numzy:6:1"]
    assert ticked["status"] == "done" and ticked["ticked_by_who"] == "admin@example.com" and ticked["ticked_at"]
    with runtime.uow() as uow:
        runs = uow.session.execute(select(AuditLog).where(AuditLog.action == "preflight.run")).scalars().all()
        assert len(runs) == 2 and runs[-1].actor == "cli" and runs[-1].details["ran_at"][:19] == again[
            "ran_at"][:19]


def test_checklist_complete_warns_until_items_are_done(check_env: dict[str, str]) -> None:
    from services.checklist import PRE_LAUNCH_SECTIONS, SEED_ITEMS, seed_checklist, update_item

    _, open_items, _ = _checks(check_env)
    assert not open_items["checklist.complete"]["passed"]
    assert open_items["checklist.complete"]["severity"] == "warning"
    settings = load_settings(check_env, env_file=None)
    runtime = Runtime(settings)
    seed_checklist(runtime.uow())
    for item in SEED_ITEMS:
        if item.section in PRE_LAUNCH_SECTIONS:
            update_item(item.key, owner="Riley", status="n/a" if item.key == "tax_address" else "done", note=None,
                        actor="admin@example.com", settings=settings, uow=runtime.uow())
    _, done, _ = _checks(check_env)
    assert done["checklist.complete"]["passed"]


def test_stripe_down_marks_new_stripe_checks_not_checked(check_env: dict[str, str]) -> None:
    runtime = Runtime(load_settings({**check_env, "STRIPE_API_BASE": "http://127.0.0.1:9"}, env_file=None))
    results = {r.id: r for r in run_preflight(runtime, explicit_run=False)}
    for check_id in ("stripe.tax", "wallets.domain", "config.mode_identifiers"):
        assert not results[check_id].passed and "Not checked" in results[check_id].message
