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
from datetime import UTC, datetime
from typing import Any

import pytest

import services
from db.migrate import upgrade
from services import audit
from services.admin_lookalikes import lookalikes_of
from services.auth import AccessDenied
from services.config import load_settings
from services.runtime import Runtime, set_runtime
from services.sync import run_sync
from tests.conftest import TEST_API_KEY, TEST_WEBHOOK_SECRETS, EmulatorHandle
from tests.security.authorization_world import (
    ADMIN,
    World,
    after_fresh_roll,
    blocked_then_unblock,
    call_as,
    change_error,
    checklist_key,
    context,
    correction,
    db_fingerprint,
    denials,
    drafted_then_submit,
    drift_action,
    efw_bulk_refund,
    efw_partial_refund,
    efw_refund,
    efw_refund_and_block,
    ignored_then_reopen,
    lost_action,
    open_dispute,
    open_efw,
    pause_then_restore,
    paused_then_resume,
    poison_event,
    processed_event,
    roll_step,
    scheduled_then,
    smoke_row,
    subscription,
)

for module in pkgutil.iter_modules(services.__path__):
    importlib.import_module(f"services.{module.name}")

# Denied: signed out, outsiders, and addresses built to fool a naive domain check (the
# same list `billing-ops check` runs against the configured admins: auth.lookalikes),
# plus Unicode look-alikes that NFKC/casefold would fold into an admin address.
DENIED_IDENTITIES = lookalikes_of("admin", "example.com") + [
    "\u212aate@example.com", "\uff41dmin@example.com", "admin@\uff45xample.com", "adm\u0131n@example.com",
    "ADM\u0130N@example.com", "admin@exampl\u0435.com", "admin@example.com\u200b", "\ufb01nance@example.com",
]
# Allowed: the same admin, however it is typed.
ALLOWED_VARIANTS = [ADMIN, "  ADMIN@Example.COM  "]



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


# action -> (arguments for one real call, made by `actor`). Each recipe prepares what its admin call
# needs and returns a zero-argument callable taking the actor.
Recipe = Callable[[World], Callable[[Any], Any]]


RECIPES: dict[str, Recipe] = {
    "plan.upgrade": lambda w: call_as("upgrade", "services.plan_changes", subscription(w, "basic"), "pro", "monthly",
                                    **context(w, gateway=True)),
    "plan.schedule_downgrade": lambda w: call_as("schedule_downgrade", "services.plan_changes",
                                               subscription(w, "pro"), "basic", "monthly", **context(w, gateway=True)),
    "plan.cancel_scheduled_downgrade": lambda w: scheduled_then(w, "cancel_scheduled_downgrade"),
    "plan.cancel_at_period_end": lambda w: call_as("cancel_at_period_end", "services.plan_changes",
                                                 subscription(w, "basic"), **context(w, gateway=True)),
    "plan.resume": lambda w: scheduled_then(w, "resume"),
    "reconcile.dry_run": lambda w: call_as("run_now_dry_run", "services.reconciliation", **context(w, gateway=True)),
    "reconcile.fix_drift": lambda w: call_as("apply_drift_fix", "services.reconciliation", drift_action(w),
                                           **context(w, gateway=True)),
    "reconcile.dismiss_finding": lambda w: call_as("dismiss_finding", "services.reconciliation", drift_action(w),
                                                 "Known leftover, handled by hand", **context(w)),
    "reconcile.resubscribe_lost_customer": lambda w: call_as("resubscribe_lost_customer", "services.lost_customers",
                                                           lost_action(w), **context(w, gateway=True)),
    "reconcile.mark_lost_customer_handled": lambda w: call_as("mark_lost_customer_handled", "services.lost_customers",
                                                            lost_action(w), "Called the customer, they left",
                                                            **context(w)),
    "webhooks.replay": lambda w: call_as("replay_event", "services.webhooks", processed_event(w),
                                       **context(w, runtime=True)),
    "efw.refund": lambda w: efw_refund(w),
    "efw.ignore": lambda w: call_as("ignore_fraud_warning", "services.fraud_warnings", open_efw(w),
                                  reason="Verified with the cardholder", **context(w)),
    "efw.reopen": lambda w: ignored_then_reopen(w),
    "efw.bulk_refund": lambda w: efw_bulk_refund(w),
    "efw.partial_refund": lambda w: efw_partial_refund(w),
    "efw.block": lambda w: call_as("block_fraud_warning", "services.efw_radar", open_efw(w), card=True, email=True,
                                 **context(w, gateway=True)),
    "efw.refund_and_block": lambda w: efw_refund_and_block(w),
    "efw.unblock": lambda w: blocked_then_unblock(w),
    "efw.bulk_ignore": lambda w: call_as("bulk_ignore", "services.fraud_warnings", [open_efw(w)],
                                       reason="Internal test purchases", **context(w)),
    "qa.run": lambda w: call_as("start_qa_run", "services.qa_matrix", ["new_subscription"], **context(w, runtime=True)),
    "qa.manual_result": lambda w: call_as("record_manual_result", "services.qa_matrix", "portal_downgrade", True,
                                        "Checked by hand in the portal", **context(w)),
    "switch.pause": lambda w: pause_then_restore(w),
    "switch.resume": lambda w: paused_then_resume(w),
    "checklist.update": lambda w: call_as("update_item", "services.checklist", checklist_key(w), owner="Ops lead",
                                        status="done", note="ready", **context(w)),
    "golive.signoff": lambda w: call_as("sign", "services.signoff", "eng_lead", **context(w, runtime=True)),
    "metrics.set_golive_time": lambda w: call_as("set_golive_time", "services.metrics",
                                               datetime(2026, 11, 20, 9, 0, tzinfo=UTC), **context(w)),
    "metrics.snapshot": lambda w: call_as("create_snapshot", "services.metrics", hours=24, **context(w)),
    "disputes.save_draft": lambda w: call_as("save_draft", "services.disputes", open_dispute(w),
                                           {"uncategorized_text": "Service delivered"}, **context(w, gateway=True)),
    "disputes.upload_file": lambda w: call_as("upload_evidence_file", "services.disputes", open_dispute(w), "receipt",
                                            "receipt.pdf", b"%PDF-1.4 receipt", **context(w, gateway=True)),
    "disputes.submit": lambda w: drafted_then_submit(w),
    "disputes.accept": lambda w: call_as("accept_dispute", "services.disputes", open_dispute(w),
                                       **context(w, gateway=True)),
    "subscription.correct": lambda w: correction(w),
    "metrics.resolve_change_error": lambda w: call_as("resolve_change_error", "services.launch_figures",
                                                    change_error(w), "Re-applied by hand", **context(w)),
    "smoke.start": lambda w: call_as("start", "services.smoke_test", **context(w, gateway=True)),
    "smoke.check": lambda w: call_as("run_checks", "services.smoke_test", smoke_row(w), **context(w, gateway=True)),
    "smoke.refund_and_cancel": lambda w: call_as("refund_and_cancel", "services.smoke_test", smoke_row(w),
                                               confirmed_amount=900, **context(w, gateway=True)),
}
# Business rules that may still refuse an authorised admin in this world (e.g. sign-off needs a
# green preflight and 8/8 QA); for these, "succeeds" means: past the guard, refused in plain words.
DOMAIN_REFUSALS_ALLOWED = {"golive.signoff", "smoke.refund_and_cancel"}  # nothing paid yet to refund


RECIPES.update({
    "webhooks.resolve": lambda w: call_as("resolve_event", "services.webhook_log", poison_event(w),
                                        "Malformed charge, nothing to apply", **context(w)),
    "webhooks.test_event": lambda w: call_as("send_test_event", "services.webhook_test_event", "authz-token",
                                           **context(w, runtime=True)),
    "webhooks.secret_roll.start": lambda w: after_fresh_roll(w, None, "start_roll", **context(w)),
    "webhooks.secret_roll.add": lambda w: roll_step(w, "add", "confirm_added"),
    "webhooks.secret_roll.verify": lambda w: roll_step(w, "verify", "confirm_verified"),
    "webhooks.secret_roll.retire": lambda w: roll_step(w, "retire", "confirm_retired", TEST_WEBHOOK_SECRETS[1]),
    "webhooks.secret_roll.cancel": lambda w: after_fresh_roll(w, "add", "cancel_roll", "Wrong endpoint",
                                                               **context(w)),
})


def test_every_privileged_action_is_in_the_matrix() -> None:
    discovered = set(audit.PRIVILEGED_ACTIONS) - {"test.poke"}
    assert discovered - set(RECIPES) == set(), "add a recipe for each new privileged action"
    assert set(RECIPES) - discovered == set(), "a recipe names an action that no longer exists"


@pytest.mark.parametrize("action", sorted(RECIPES))
def test_only_admins_can_act(world: World, action: str) -> None:
    if action not in audit.PRIVILEGED_ACTIONS:
        pytest.fail(f"{action} is no longer privileged")
    call = RECIPES[action](world)
    before = db_fingerprint(world)
    denials_before = denials(world, action)
    world.emulator.clear_requests()
    for identity in DENIED_IDENTITIES:
        with pytest.raises(AccessDenied):
            call(identity)
    assert world.emulator.requests() == [], "Stripe saw a request from a denied caller"
    assert db_fingerprint(world) == before, "a denied caller changed the billing DB"
    denial_rows = denials(world, action) - denials_before
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
