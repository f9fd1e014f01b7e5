"""Every privileged action x every identity: only admins act; every other caller is
denied before anything happens (Stripe sees no request, the billing DB is unchanged)
and leaves exactly one denial row in the audit log.

Privileged functions are discovered, not listed: every function wrapped by
`services.audit.privileged` registers itself. A new one without a recipe here fails
`test_every_privileged_action_is_in_the_matrix`.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

import services
from db.migrate import upgrade
from db.models import AuditLog, Base, FraudWarning, ReconcileAction, UserSubscription
from services import audit
from services.admin_lookalikes import lookalikes_of
from services.audit import SystemCaller
from services.auth import AccessDenied
from services.config import load_settings
from services.runtime import Runtime, set_runtime
from services.sync import run_sync
from tests.conftest import TEST_API_KEY, TEST_WEBHOOK_SECRETS, EmulatorHandle

for module in pkgutil.iter_modules(services.__path__):
    importlib.import_module(f"services.{module.name}")

ADMIN = "admin@example.com"
# Denied: signed out, outsiders, and addresses built to fool a naive domain check (the
# same list `billing-ops check` runs against the configured admins: auth.lookalikes),
# plus Unicode look-alikes that NFKC/casefold would fold into an admin address.
DENIED_IDENTITIES = lookalikes_of("admin", "example.com") + [
    "\u212aate@example.com", "\uff41dmin@example.com", "admin@\uff45xample.com", "adm\u0131n@example.com",
    "ADM\u0130N@example.com", "admin@exampl\u0435.com", "admin@example.com\u200b", "\ufb01nance@example.com",
]
# Allowed: the same admin, however it is typed.
ALLOWED_VARIANTS = [ADMIN, "  ADMIN@Example.COM  "]


@dataclass
class World:
    runtime: Runtime
    emulator: EmulatorHandle
    prices: dict[str, Any]


@pytest.fixture(scope="module")
def world(emulator_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    emulator = EmulatorHandle(emulator_server)
    emulator.admin("reset")
    emulator.admin("rate_limit", {"per_second": 10_000})
    seeded = emulator.admin("seed", {"customers": 24, "seed": 11})
    url = f"sqlite:///{tmp_path_factory.mktemp('authz')}/authz.db"
    upgrade(url)
    settings = load_settings({
        "DATABASE_URL": url, "STRIPE_API_KEY": TEST_API_KEY, "STRIPE_API_BASE": emulator.base_url,
        "STRIPE_WEBHOOK_SECRETS": ",".join(TEST_WEBHOOK_SECRETS), "ADMIN_EMAIL_DOMAIN": "example.com",
        "SIGNOFF_ENG_LEADS": ADMIN, "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(seeded["prices"]),
        "STRIPE_RATE_LIMIT_PER_SECOND": "1000", "STRIPE_MAX_RETRIES": "0",
        "STRIPE_SMOKE_TEST_PRICE": seeded["prices"]["basic"]["monthly"],
    }, env_file=None)
    runtime = Runtime(settings)
    set_runtime(runtime)
    run_sync(runtime, since=None, days=30)
    yield World(runtime, emulator, seeded["prices"])
    set_runtime(None)


def _subscription(world: World, plan: str, *, pending: bool = False) -> str:
    with world.runtime.uow() as uow:
        query = select(UserSubscription.stripe_subscription_id).where(
            UserSubscription.plan == plan, UserSubscription.interval == "monthly",
            UserSubscription.status == "active", UserSubscription.cancel_at_period_end.is_(pending),
        ).order_by(UserSubscription.id)
        used = world.__dict__.setdefault("used", set())
        for subscription_id in uow.session.execute(query).scalars():
            if subscription_id not in used:
                used.add(subscription_id)
                return str(subscription_id)
    raise AssertionError(f"no free {plan} subscription in the seeded world")


def _open_efw(world: World) -> str:
    with world.runtime.uow() as uow:
        used = world.__dict__.setdefault("used", set())
        for efw_id in uow.session.execute(select(FraudWarning.id).where(
                FraudWarning.status == "open", FraudWarning.actionable.is_(True)).order_by(FraudWarning.id)).scalars():
            if efw_id not in used:
                used.add(efw_id)
                return str(efw_id)
    raise AssertionError("no open actionable EFW in the seeded world")


def _remaining(world: World, efw_id: str) -> int:
    from services.fraud_warnings import get_fraud_warning

    row = get_fraud_warning(world.runtime.uow(), efw_id)
    assert row is not None
    return row.remaining


def _drift_action(world: World) -> int:
    from services.reconciliation import DRIFT_KINDS, run_reconciliation

    subscription_id = _subscription(world, "basic")
    world.runtime.gateway.update_subscription(subscription_id, {"metadata": {"pending_plan": "basic"}},
                                              idempotency_key=f"authz-drift:{subscription_id}")
    rt = world.runtime
    run_reconciliation(settings=rt.settings, uow=rt.uow(), gateway=rt.gateway, apply=False, actor="cli",
                       trigger="manual")
    with rt.uow() as uow:
        action_id = uow.session.execute(select(ReconcileAction.id).where(
            ReconcileAction.kind.in_(DRIFT_KINDS), ReconcileAction.stripe_subscription_id == subscription_id)
        ).scalar()
    assert action_id is not None
    return int(action_id)


def _lost_action(world: World) -> int:
    """A subscription Stripe ended while its downgrade was pending (cancelled now), found by a dry-run."""
    from services.reconciliation import LOST_CUSTOMER, run_reconciliation

    gateway = world.runtime.gateway
    subscription_id = _subscription(world, "pro")
    sub = gateway.update_subscription(subscription_id, {"metadata": {"pending_plan": "basic"}},
                                      idempotency_key=f"authz-lost:{subscription_id}")
    pm = gateway.attach_payment_method("pm_card_visa", sub["customer"], idempotency_key=f"authz-pm:{subscription_id}")
    gateway.update_customer(sub["customer"], {"invoice_settings": {"default_payment_method": pm["id"]}},
                            idempotency_key=f"authz-cus:{subscription_id}")
    gateway.cancel_subscription(subscription_id, idempotency_key=f"authz-cancel:{subscription_id}")
    rt = world.runtime
    run_reconciliation(settings=rt.settings, uow=rt.uow(), gateway=gateway, apply=False, actor="cli", trigger="cli")
    with rt.uow() as uow:
        action_id = uow.session.execute(select(ReconcileAction.id).where(
            ReconcileAction.kind == LOST_CUSTOMER, ReconcileAction.stripe_subscription_id == subscription_id)
        ).scalars().first()
    assert action_id is not None
    return int(action_id)


def _open_dispute(world: World) -> str:
    from db.models import Dispute
    from db.models.base import utcnow

    with world.runtime.uow() as uow:
        used = world.__dict__.setdefault("used", set())
        for dispute_id in uow.session.execute(select(Dispute.id).where(
                Dispute.status == "needs_response", Dispute.due_by > utcnow()).order_by(Dispute.id)).scalars():
            if dispute_id not in used:
                used.add(dispute_id)
                return str(dispute_id)
    raise AssertionError("no open dispute in the seeded world")


def _drafted_then_submit(world: World) -> Callable[[Any], Any]:
    from services.disputes import save_draft

    dispute_id = _open_dispute(world)
    save_draft(dispute_id, {"uncategorized_text": "Service delivered"}, actor=ADMIN, **_ctx(world, gateway=True))
    return _call("submit_evidence", "services.disputes", dispute_id, **_ctx(world, gateway=True))


def _checklist_key(world: World) -> str:
    from services.checklist import list_items, seed_checklist

    seed_checklist(world.runtime.uow())
    return str(list_items(world.runtime.uow())[0]["key"])


# action -> (arguments for one real call, made by `actor`). Each recipe prepares what its admin call
# needs and returns a zero-argument callable taking the actor.
Recipe = Callable[[World], Callable[[Any], Any]]


def _call(function_name: str, module: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    function = getattr(importlib.import_module(module), function_name)
    return lambda actor: function(*args, actor=actor, **kwargs)


def _ctx(world: World, *, gateway: bool = False, runtime: bool = False) -> dict[str, Any]:
    rt = world.runtime
    extra: dict[str, Any] = {"settings": rt.settings, "uow": rt.uow()}
    if gateway:
        extra["gateway"] = rt.gateway
    if runtime:
        extra["runtime"] = rt
    return extra


RECIPES: dict[str, Recipe] = {
    "plan.upgrade": lambda w: _call("upgrade", "services.plan_changes", _subscription(w, "basic"), "pro", "monthly",
                                    **_ctx(w, gateway=True)),
    "plan.schedule_downgrade": lambda w: _call("schedule_downgrade", "services.plan_changes",
                                               _subscription(w, "pro"), "basic", "monthly", **_ctx(w, gateway=True)),
    "plan.cancel_scheduled_downgrade": lambda w: _scheduled_then(w, "cancel_scheduled_downgrade"),
    "plan.cancel_at_period_end": lambda w: _call("cancel_at_period_end", "services.plan_changes",
                                                 _subscription(w, "basic"), **_ctx(w, gateway=True)),
    "plan.resume": lambda w: _scheduled_then(w, "resume"),
    "reconcile.dry_run": lambda w: _call("run_now_dry_run", "services.reconciliation", **_ctx(w, gateway=True)),
    "reconcile.fix_drift": lambda w: _call("apply_drift_fix", "services.reconciliation", _drift_action(w),
                                           **_ctx(w, gateway=True)),
    "reconcile.dismiss_finding": lambda w: _call("dismiss_finding", "services.reconciliation", _drift_action(w),
                                                 "Known leftover, handled by hand", **_ctx(w)),
    "reconcile.resubscribe_lost_customer": lambda w: _call("resubscribe_lost_customer", "services.lost_customers",
                                                           _lost_action(w), **_ctx(w, gateway=True)),
    "reconcile.mark_lost_customer_handled": lambda w: _call("mark_lost_customer_handled", "services.lost_customers",
                                                            _lost_action(w), "Called the customer, they left",
                                                            **_ctx(w)),
    "webhooks.replay": lambda w: _call("replay_event", "services.webhooks", _processed_event(w),
                                       **_ctx(w, runtime=True)),
    "efw.refund": lambda w: _efw_refund(w),
    "efw.ignore": lambda w: _call("ignore_fraud_warning", "services.fraud_warnings", _open_efw(w),
                                  reason="Verified with the cardholder", **_ctx(w)),
    "efw.reopen": lambda w: _ignored_then_reopen(w),
    "efw.bulk_refund": lambda w: _efw_bulk_refund(w),
    "efw.partial_refund": lambda w: _efw_partial_refund(w),
    "efw.block": lambda w: _call("block_fraud_warning", "services.efw_radar", _open_efw(w), card=True, email=True,
                                 **_ctx(w, gateway=True)),
    "efw.refund_and_block": lambda w: _efw_refund_and_block(w),
    "efw.unblock": lambda w: _blocked_then_unblock(w),
    "efw.bulk_ignore": lambda w: _call("bulk_ignore", "services.fraud_warnings", [_open_efw(w)],
                                       reason="Internal test purchases", **_ctx(w)),
    "qa.run": lambda w: _call("start_qa_run", "services.qa_matrix", ["new_subscription"], **_ctx(w, runtime=True)),
    "qa.manual_result": lambda w: _call("record_manual_result", "services.qa_matrix", "portal_downgrade", True,
                                        "Checked by hand in the portal", **_ctx(w)),
    "switch.pause": lambda w: _pause_then_restore(w),
    "switch.resume": lambda w: _paused_then_resume(w),
    "checklist.update": lambda w: _call("update_item", "services.checklist", _checklist_key(w), owner="Ops lead",
                                        status="done", note="ready", **_ctx(w)),
    "golive.signoff": lambda w: _call("sign", "services.signoff", "eng_lead", **_ctx(w, runtime=True)),
    "metrics.set_golive_time": lambda w: _call("set_golive_time", "services.metrics",
                                               datetime(2026, 11, 20, 9, 0, tzinfo=UTC), **_ctx(w)),
    "metrics.snapshot": lambda w: _call("create_snapshot", "services.metrics", hours=24, **_ctx(w)),
    "disputes.save_draft": lambda w: _call("save_draft", "services.disputes", _open_dispute(w),
                                           {"uncategorized_text": "Service delivered"}, **_ctx(w, gateway=True)),
    "disputes.upload_file": lambda w: _call("upload_evidence_file", "services.disputes", _open_dispute(w), "receipt",
                                            "receipt.pdf", b"%PDF-1.4 receipt", **_ctx(w, gateway=True)),
    "disputes.submit": lambda w: _drafted_then_submit(w),
    "disputes.accept": lambda w: _call("accept_dispute", "services.disputes", _open_dispute(w),
                                       **_ctx(w, gateway=True)),
    "subscription.correct": lambda w: _correction(w),
    "metrics.resolve_change_error": lambda w: _call("resolve_change_error", "services.launch_figures",
                                                    _change_error(w), "Re-applied by hand", **_ctx(w)),
    "smoke.start": lambda w: _call("start", "services.smoke_test", **_ctx(w, gateway=True)),
    "smoke.check": lambda w: _call("run_checks", "services.smoke_test", _smoke_row(w), **_ctx(w, gateway=True)),
    "smoke.refund_and_cancel": lambda w: _call("refund_and_cancel", "services.smoke_test", _smoke_row(w),
                                               confirmed_amount=900, **_ctx(w, gateway=True)),
}
# Business rules that may still refuse an authorised admin in this world (e.g. sign-off needs a
# green preflight and 8/8 QA); for these, "succeeds" means: past the guard, refused in plain words.
DOMAIN_REFUSALS_ALLOWED = {"golive.signoff", "smoke.refund_and_cancel"}  # nothing paid yet to refund


def _change_error(world: World) -> int:
    with world.runtime.uow() as uow:
        row = audit.record(uow, actor="cron", action="plan.upgrade", result="error", target="sub_authz",
                           error="Stripe returned an error.")
        uow.commit()
        return int(row.id)


def _correction(world: World) -> Callable[[Any], Any]:
    from services.corrections import describe_correction

    subscription_id = _subscription(world, "basic")
    preview = describe_correction(subscription_id, "set_cancel_at_period_end", **_ctx(world, gateway=True))
    return _call("apply_correction", "services.corrections", preview, **_ctx(world, gateway=True))


def _smoke_row(world: World) -> int:
    """A smoke test still waiting for its payment (checks and refund have nothing to do yet)."""
    from db.models import SmokeTest

    with world.runtime.uow() as uow:
        row = SmokeTest(started_by=ADMIN, mode="test", price_id="price_x", status="open", steps=[])
        uow.session.add(row)
        uow.commit()
        return int(row.id)


def _pause_then_restore(world: World) -> Callable[[Any], Any]:
    """Pause as the actor, then resume as the system, so later recipes find processing running."""
    from services.switches import resume_switch, switch_state

    pause = _call("pause_switch", "services.switches", "processing", reason="Launch-day incident", **_ctx(world))

    def act(actor: Any) -> Any:
        try:
            return pause(actor)
        finally:
            if switch_state(world.runtime.uow(), "processing").paused:
                resume_switch("processing", actor=SystemCaller("cli"), settings=world.runtime.settings,
                              uow=world.runtime.uow())

    return act


def _paused_then_resume(world: World) -> Callable[[Any], Any]:
    """Paused before the calls (denied callers leave it paused; the admin's call resumes it)."""
    from services.switches import pause_switch

    pause_switch("reconcile", reason="set up by the matrix", actor=SystemCaller("cli"), settings=world.runtime.settings,
                 uow=world.runtime.uow())
    return _call("resume_switch", "services.switches", "reconcile", **_ctx(world))


def _scheduled_then(world: World, function_name: str) -> Callable[[Any], Any]:
    from services.plan_changes import schedule_downgrade

    subscription_id = _subscription(world, "pro")
    schedule_downgrade(subscription_id, "basic", "monthly", actor=SystemCaller("cli"), **_ctx(world, gateway=True))
    return _call(function_name, "services.plan_changes", subscription_id, **_ctx(world, gateway=True))


def _processed_event(world: World) -> str:
    from db.models import StripeEvent

    with world.runtime.uow() as uow:
        return str(uow.session.execute(select(StripeEvent.id).where(StripeEvent.status == "processed")
                                       .order_by(StripeEvent.id)).scalars().first())


def _efw_refund(world: World) -> Callable[[Any], Any]:
    efw_id = _open_efw(world)
    return _call("refund_fraud_warning", "services.fraud_warnings", efw_id, confirmed_amount=_remaining(world, efw_id),
                 **_ctx(world, gateway=True))


def _efw_partial_refund(world: World) -> Callable[[Any], Any]:
    efw_id = _open_efw(world)
    return _call("partial_refund_fraud_warning", "services.fraud_warnings", efw_id, amount=100,
                 reason="requested_by_customer", confirmed_remaining=_remaining(world, efw_id),
                 **_ctx(world, gateway=True))


def _efw_refund_and_block(world: World) -> Callable[[Any], Any]:
    efw_id = _open_efw(world)
    return _call("refund_and_block", "services.efw_radar", efw_id, confirmed_amount=_remaining(world, efw_id),
                 card=True, email=False, **_ctx(world, gateway=True))


def _blocked_then_unblock(world: World) -> Callable[[Any], Any]:
    from services.efw_radar import block_fraud_warning, blocks_for

    efw_id = _open_efw(world)
    block_fraud_warning(efw_id, card=False, email=True, actor=ADMIN, **_ctx(world, gateway=True))
    [block] = blocks_for(world.runtime.uow(), efw_id)
    return _call("unblock", "services.efw_radar", block.id, **_ctx(world, gateway=True))


def _efw_bulk_refund(world: World) -> Callable[[Any], Any]:
    efw_id = _open_efw(world)
    return _call("bulk_refund", "services.fraud_warnings", {efw_id: _remaining(world, efw_id)},
                 **_ctx(world, gateway=True))


def _ignored_then_reopen(world: World) -> Callable[[Any], Any]:
    from services.fraud_warnings import ignore_fraud_warning

    efw_id = _open_efw(world)
    ignore_fraud_warning(efw_id, reason="Ignored to test reopening", actor=ADMIN, **_ctx(world))
    return _call("reopen_fraud_warning", "services.fraud_warnings", efw_id, **_ctx(world))


# --- the webhook delivery log, test event and secret roll -------------------------------------
def _poison_event(world: World) -> str:
    """A stored webhook event no handler can apply (its charge's `created` is not a time): failed."""
    import time

    from services.webhooks import VerifiedEvent, ingest_event

    event_id = f"evt_authz_poison_{len(world.__dict__.setdefault('poison', []))}"
    world.__dict__["poison"].append(event_id)
    event = {"id": event_id, "object": "event", "type": "charge.succeeded", "created": int(time.time()),
             "livemode": False, "data": {"object": {"id": f"ch_{event_id}", "object": "charge", "amount": 100,
                                                    "currency": "usd", "created": "soon"}}}
    ingest_event(world.runtime, VerifiedEvent(event, signed_with=""), process=True)
    return event_id


def _with_secrets(world: World, *secrets: str) -> Any:
    from pydantic import SecretStr

    return world.runtime.settings.model_copy(update={"stripe_webhook_secrets": [SecretStr(s) for s in secrets]})


def _fresh_roll(world: World, *, upto: str | None = None) -> None:
    """No roll in progress, then (as the admin) a roll started with the primary secret only and
    taken through the steps before `upto`'s."""
    import hashlib
    import hmac
    import time

    from db.models import AppSetting
    from services import secret_roll, webhooks

    primary, rotated = TEST_WEBHOOK_SECRETS
    with world.runtime.uow() as uow:
        row = uow.session.get(AppSetting, secret_roll.SETTING_KEY)
        if row is not None:
            uow.session.delete(row)
            uow.commit()
    if upto is None:
        return
    uow_for = world.runtime.uow
    secret_roll.start_roll(actor=ADMIN, settings=_with_secrets(world, primary), uow=uow_for())
    if upto == "add":
        return
    secret_roll.confirm_added(actor=ADMIN, settings=world.runtime.settings, uow=uow_for())
    body = json.dumps({"id": f"evt_authz_roll_{upto}", "object": "event", "type": "product.created",
                       "created": int(time.time()), "livemode": False,
                       "data": {"object": {"id": "prod_authz", "object": "product"}}}).encode()
    ts = int(time.time())
    header = f"t={ts},v1=" + hmac.new(rotated.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    webhooks.store_events(world.runtime, [webhooks.verify_signature(body, header, [primary, rotated])])
    if upto == "verify":
        return
    secret_roll.confirm_verified(actor=ADMIN, settings=world.runtime.settings, uow=uow_for())


def _after_fresh_roll(world: World, upto: str | None, function_name: str, *args: Any,
                      **kwargs: Any) -> Callable[[Any], Any]:
    _fresh_roll(world, upto=upto)
    return _call(function_name, "services.secret_roll", *args, **kwargs)


def _roll_step(world: World, upto: str, function_name: str, *secrets: str) -> Callable[[Any], Any]:
    _fresh_roll(world, upto=upto)
    settings = _with_secrets(world, *secrets) if secrets else world.runtime.settings
    return _call(function_name, "services.secret_roll", settings=settings, uow=world.runtime.uow())


RECIPES.update({
    "webhooks.resolve": lambda w: _call("resolve_event", "services.webhook_log", _poison_event(w),
                                        "Malformed charge, nothing to apply", **_ctx(w)),
    "webhooks.test_event": lambda w: _call("send_test_event", "services.webhook_test_event", "authz-token",
                                           **_ctx(w, runtime=True)),
    "webhooks.secret_roll.start": lambda w: _after_fresh_roll(w, None, "start_roll", **_ctx(w)),
    "webhooks.secret_roll.add": lambda w: _roll_step(w, "add", "confirm_added"),
    "webhooks.secret_roll.verify": lambda w: _roll_step(w, "verify", "confirm_verified"),
    "webhooks.secret_roll.retire": lambda w: _roll_step(w, "retire", "confirm_retired", TEST_WEBHOOK_SECRETS[1]),
    "webhooks.secret_roll.cancel": lambda w: _after_fresh_roll(w, "add", "cancel_roll", "Wrong endpoint",
                                                               **_ctx(w)),
})


def _db_fingerprint(world: World) -> dict[str, int]:
    """Row counts and a content hash per table, except the audit log itself."""
    fingerprint: dict[str, int] = {}
    with world.runtime.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name == "audit_log":
                continue
            rows = conn.execute(text(f"select * from {table.name}")).all()  # noqa: S608 (table names from metadata)
            fingerprint[table.name] = hash(tuple(sorted(str(tuple(r)) for r in rows)))
    return fingerprint


def _denials(world: World, action: str) -> int:
    with world.runtime.uow() as uow:
        return int(uow.session.execute(select(func.count()).where(
            AuditLog.action == action, AuditLog.result == "denied")).scalar() or 0)


def test_every_privileged_action_is_in_the_matrix() -> None:
    discovered = set(audit.PRIVILEGED_ACTIONS) - {"test.poke"}
    assert discovered - set(RECIPES) == set(), "add a recipe for each new privileged action"
    assert set(RECIPES) - discovered == set(), "a recipe names an action that no longer exists"


@pytest.mark.parametrize("action", sorted(RECIPES))
def test_only_admins_can_act(world: World, action: str) -> None:
    if action not in audit.PRIVILEGED_ACTIONS:
        pytest.fail(f"{action} is no longer privileged")
    call = RECIPES[action](world)
    before = _db_fingerprint(world)
    denials_before = _denials(world, action)
    world.emulator.clear_requests()
    for identity in DENIED_IDENTITIES:
        with pytest.raises(AccessDenied):
            call(identity)
    assert world.emulator.requests() == [], "Stripe saw a request from a denied caller"
    assert _db_fingerprint(world) == before, "a denied caller changed the billing DB"
    denial_rows = _denials(world, action) - denials_before
    assert denial_rows == len(DENIED_IDENTITIES)  # one denial row each

    admin = ALLOWED_VARIANTS[len(action) % len(ALLOWED_VARIANTS)]  # both spellings get exercised
    try:
        call(admin)
    except AccessDenied:
        pytest.fail(f"{admin!r} was denied {action}")
    except Exception as error:  # a business refusal is only acceptable where documented above
        if action not in DOMAIN_REFUSALS_ALLOWED:
            raise
        assert getattr(error, "message", str(error))


def test_the_matrix_identities_are_what_they_claim() -> None:
    """Every denied identity is refused by the guard's own check and every allowed spelling
    passes it, whatever ran before: the matrix above proves something only if that holds."""
    settings = load_settings({"DATABASE_URL": "sqlite://", "ADMIN_EMAIL_DOMAIN": "example.com",
                              "STRIPE_API_KEY": TEST_API_KEY}, env_file=None)  # the world's admin rule
    assert len(set(DENIED_IDENTITIES)) == len(DENIED_IDENTITIES) >= 15
    admitted = []
    for identity in DENIED_IDENTITIES:
        try:
            audit.require_admin_actor(identity, settings)
            admitted.append(identity)
        except AccessDenied:
            pass
    assert admitted == []
    assert {audit.require_admin_actor(variant, settings) for variant in ALLOWED_VARIANTS} == {ADMIN}
    print(f"\nauthorization matrix: {len(RECIPES)} actions x {len(DENIED_IDENTITIES) + 1} identities = "
          f"{len(RECIPES) * (len(DENIED_IDENTITIES) + 1)} calls")
