"""The world the authorization matrix runs in (tests/security/test_authorization_matrix.py):
a synced emulator account, and the helpers its recipes use to prepare one real call per
privileged action (a free subscription, an open EFW, a drift finding, a lost customer, ...)."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text

from db.models import AuditLog, Base, FraudWarning, ReconcileAction, UserSubscription
from services import audit
from services.audit import SystemCaller
from services.runtime import Runtime
from tests.conftest import TEST_WEBHOOK_SECRETS, EmulatorHandle

ADMIN = "admin@example.com"

@dataclass
class World:
    runtime: Runtime
    emulator: EmulatorHandle
    prices: dict[str, Any]



def call_as(function_name: str, module: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    function = getattr(importlib.import_module(module), function_name)
    return lambda actor: function(*args, actor=actor, **kwargs)


def context(world: World, *, gateway: bool = False, runtime: bool = False) -> dict[str, Any]:
    rt = world.runtime
    extra: dict[str, Any] = {"settings": rt.settings, "uow": rt.uow()}
    if gateway:
        extra["gateway"] = rt.gateway
    if runtime:
        extra["runtime"] = rt
    return extra



def subscription(world: World, plan: str, *, pending: bool = False) -> str:
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


def open_efw(world: World) -> str:
    with world.runtime.uow() as uow:
        used = world.__dict__.setdefault("used", set())
        for efw_id in uow.session.execute(select(FraudWarning.id).where(
                FraudWarning.status == "open", FraudWarning.actionable.is_(True)).order_by(FraudWarning.id)).scalars():
            if efw_id not in used:
                used.add(efw_id)
                return str(efw_id)
    raise AssertionError("no open actionable EFW in the seeded world")


def remaining(world: World, efw_id: str) -> int:
    from services.fraud_warnings import get_fraud_warning

    row = get_fraud_warning(world.runtime.uow(), efw_id)
    assert row is not None
    return row.remaining


def drift_action(world: World) -> int:
    from services.reconciliation import DRIFT_KINDS, run_reconciliation

    subscription_id = subscription(world, "basic")
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


def lost_action(world: World) -> int:
    """A subscription Stripe ended while its downgrade was pending (cancelled now), found by a dry-run."""
    from services.reconciliation import LOST_CUSTOMER, run_reconciliation

    gateway = world.runtime.gateway
    subscription_id = subscription(world, "pro")
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


def open_dispute(world: World) -> str:
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


def drafted_then_submit(world: World) -> Callable[[Any], Any]:
    from services.disputes import save_draft

    dispute_id = open_dispute(world)
    save_draft(dispute_id, {"uncategorized_text": "Service delivered"}, actor=ADMIN, **context(world, gateway=True))
    return call_as("submit_evidence", "services.disputes", dispute_id, **context(world, gateway=True))


def checklist_key(world: World) -> str:
    from services.checklist import list_items, seed_checklist

    seed_checklist(world.runtime.uow())
    return str(list_items(world.runtime.uow())[0]["key"])



def change_error(world: World) -> int:
    with world.runtime.uow() as uow:
        row = audit.record(uow, actor="cron", action="plan.upgrade", result="error", target="sub_authz",
                           error="Stripe returned an error.")
        uow.commit()
        return int(row.id)


def correction(world: World) -> Callable[[Any], Any]:
    from services.corrections import describe_correction

    subscription_id = subscription(world, "basic")
    preview = describe_correction(subscription_id, "set_cancel_at_period_end", **context(world, gateway=True))
    return call_as("apply_correction", "services.corrections", preview, **context(world, gateway=True))


def smoke_row(world: World) -> int:
    """A smoke test still waiting for its payment (checks and refund have nothing to do yet)."""
    from db.models import SmokeTest

    with world.runtime.uow() as uow:
        row = SmokeTest(started_by=ADMIN, mode="test", price_id="price_x", status="open", steps=[])
        uow.session.add(row)
        uow.commit()
        return int(row.id)


def pause_then_restore(world: World) -> Callable[[Any], Any]:
    """Pause as the actor, then resume as the system, so later recipes find processing running."""
    from services.switches import resume_switch, switch_state

    pause = call_as("pause_switch", "services.switches", "processing", reason="Launch-day incident", **context(world))

    def act(actor: Any) -> Any:
        try:
            return pause(actor)
        finally:
            if switch_state(world.runtime.uow(), "processing").paused:
                resume_switch("processing", actor=SystemCaller("cli"), settings=world.runtime.settings,
                              uow=world.runtime.uow())

    return act


def paused_then_resume(world: World) -> Callable[[Any], Any]:
    """Paused before the calls (denied callers leave it paused; the admin's call resumes it)."""
    from services.switches import pause_switch

    pause_switch("reconcile", reason="set up by the matrix", actor=SystemCaller("cli"), settings=world.runtime.settings,
                 uow=world.runtime.uow())
    return call_as("resume_switch", "services.switches", "reconcile", **context(world))


def scheduled_then(world: World, function_name: str) -> Callable[[Any], Any]:
    from services.plan_changes import schedule_downgrade

    subscription_id = subscription(world, "pro")
    schedule_downgrade(subscription_id, "basic", "monthly", actor=SystemCaller("cli"), **context(world, gateway=True))
    return call_as(function_name, "services.plan_changes", subscription_id, **context(world, gateway=True))


def processed_event(world: World) -> str:
    from db.models import StripeEvent

    with world.runtime.uow() as uow:
        return str(uow.session.execute(select(StripeEvent.id).where(StripeEvent.status == "processed")
                                       .order_by(StripeEvent.id)).scalars().first())


def efw_refund(world: World) -> Callable[[Any], Any]:
    efw_id = open_efw(world)
    return call_as("refund_fraud_warning", "services.fraud_warnings", efw_id, confirmed_amount=remaining(world, efw_id),
                 **context(world, gateway=True))


def efw_partial_refund(world: World) -> Callable[[Any], Any]:
    efw_id = open_efw(world)
    return call_as("partial_refund_fraud_warning", "services.fraud_warnings", efw_id, amount=100,
                 reason="requested_by_customer", confirmed_remaining=remaining(world, efw_id),
                 **context(world, gateway=True))


def efw_refund_and_block(world: World) -> Callable[[Any], Any]:
    efw_id = open_efw(world)
    return call_as("refund_and_block", "services.efw_radar", efw_id, confirmed_amount=remaining(world, efw_id),
                 card=True, email=False, **context(world, gateway=True))


def blocked_then_unblock(world: World) -> Callable[[Any], Any]:
    from services.efw_radar import block_fraud_warning, blocks_for

    efw_id = open_efw(world)
    block_fraud_warning(efw_id, card=False, email=True, actor=ADMIN, **context(world, gateway=True))
    [block] = blocks_for(world.runtime.uow(), efw_id)
    return call_as("unblock", "services.efw_radar", block.id, **context(world, gateway=True))


def efw_bulk_refund(world: World) -> Callable[[Any], Any]:
    efw_id = open_efw(world)
    return call_as("bulk_refund", "services.fraud_warnings", {efw_id: remaining(world, efw_id)},
                 **context(world, gateway=True))


def ignored_then_reopen(world: World) -> Callable[[Any], Any]:
    from services.fraud_warnings import ignore_fraud_warning

    efw_id = open_efw(world)
    ignore_fraud_warning(efw_id, reason="Ignored to test reopening", actor=ADMIN, **context(world))
    return call_as("reopen_fraud_warning", "services.fraud_warnings", efw_id, **context(world))


# --- the webhook delivery log, test event and secret roll -------------------------------------
def poison_event(world: World) -> str:
    """A stored webhook event no handler can apply (its charge's `created` is not a time): failed."""

    from services.webhooks import VerifiedEvent, ingest_event

    event_id = f"evt_authz_poison_{len(world.__dict__.setdefault('poison', []))}"
    world.__dict__["poison"].append(event_id)
    event = {"id": event_id, "object": "event", "type": "charge.succeeded", "created": int(time.time()),
             "livemode": False, "data": {"object": {"id": f"ch_{event_id}", "object": "charge", "amount": 100,
                                                    "currency": "usd", "created": "soon"}}}
    ingest_event(world.runtime, VerifiedEvent(event, signed_with=""), process=True)
    return event_id


def with_secrets(world: World, *secrets: str) -> Any:
    from pydantic import SecretStr

    return world.runtime.settings.model_copy(update={"stripe_webhook_secrets": [SecretStr(s) for s in secrets]})


def fresh_roll(world: World, *, upto: str | None = None) -> None:
    """No roll in progress, then (as the admin) a roll started with the primary secret only and
    taken through the steps before `upto`'s."""
    import hashlib
    import hmac

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
    secret_roll.start_roll(actor=ADMIN, settings=with_secrets(world, primary), uow=uow_for())
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


def after_fresh_roll(world: World, upto: str | None, function_name: str, *args: Any,
                      **kwargs: Any) -> Callable[[Any], Any]:
    fresh_roll(world, upto=upto)
    return call_as(function_name, "services.secret_roll", *args, **kwargs)


def roll_step(world: World, upto: str, function_name: str, *secrets: str) -> Callable[[Any], Any]:
    fresh_roll(world, upto=upto)
    settings = with_secrets(world, *secrets) if secrets else world.runtime.settings
    return call_as(function_name, "services.secret_roll", settings=settings, uow=world.runtime.uow())




def db_fingerprint(world: World) -> dict[str, int]:
    """Row counts and a content hash per table, except the audit log itself."""
    fingerprint: dict[str, int] = {}
    with world.runtime.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name == "audit_log":
                continue
            rows = conn.execute(text(f"select * from {table.name}")).all()  # noqa: S608 (table names from metadata)
            fingerprint[table.name] = hash(tuple(sorted(str(tuple(r)) for r in rows)))
    return fingerprint


def denials(world: World, action: str) -> int:
    with world.runtime.uow() as uow:
        return int(uow.session.execute(select(func.count()).where(
            AuditLog.action == action, AuditLog.result == "denied")).scalar() or 0)
