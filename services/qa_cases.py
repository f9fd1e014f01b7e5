"""The runbook's 8 plan-change QA cases, each on its own test clock and customer.

Each case acts through the console's own services (plan_changes, reconciliation), pulls
the resulting events from the Events API and ingests them like a sync would, then checks
three kinds of expectation: Stripe's state, the events seen and the billing-DB rows.
Written in the steps of services/qa_runner.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.money import format_money
from services.qa_runner import (
    CaseContext,
    advance_clock,
    db_change_kinds,
    db_invoice_row,
    emulator_helper,
    expect_db_subscription,
    expect_events,
    expect_invoice_recorded,
    expect_open_invoice,
    expect_recovered,
    invoices_of,
    pay_with,
    period_end_of,
    plan_price,
    pull_events,
    set_card,
    settled,
    start_case,
    subscribe,
    subscribed,
)
from services.stripe_objects import invoice_payment_intent, item_id, item_price_id

# Stripe finalizes a renewal invoice about an hour after the period ends, then charges it.
RENEWAL_GRACE_SECONDS = 2 * 3600
PAST_CLOCK_OFFSET_SECONDS = 400 * 24 * 3600


@dataclass(frozen=True)
class QaCase:
    id: str
    title: str
    steps: str
    expected: str


CASES: tuple[QaCase, ...] = (
    QaCase("new_subscription", "New subscription", "Checkout → Pro monthly", "Active, invoice paid, plan=pro"),
    QaCase("upgrade", "Upgrade", "Basic → Pro", "Immediate invoice (prorated upgrade)"),
    QaCase("downgrade_scheduled", "Downgrade schedule", "Pro → Basic",
           "cancel_at_period_end true + metadata.pending_plan"),
    QaCase("reconciliation_applies", "Reconciliation", "Wait near renewal",
           "Downgrade applied before period end (cancel unset), renews on Basic"),
    QaCase("sca_required", "SCA required", "3DS card, then completion",
           "requires_action recorded, then paid and recovered by customer action"),
    QaCase("past_due_recovered", "Past due", "Failing card → update card",
           "past_due, then resolves after the card update"),
    QaCase("portal_downgrade", "Portal downgrade", "Downgrade as the portal does", "Reflected in the billing DB"),
    QaCase("cancel_at_period_end", "Cancel", "Cancel at period end", "Ends at period end; not active afterwards"),
)
CASE_IDS = tuple(case.id for case in CASES)
CASES_BY_ID = {case.id: case for case in CASES}


# --- the cases ------------------------------------------------------------------------------
def _case_new_subscription(ctx: CaseContext) -> None:
    start_case(ctx)
    pro = plan_price(ctx, "pro")
    with ctx.step("checkout"):
        session = ctx.gateway.create_checkout_session(
            {"mode": "subscription", "customer": ctx.customer_id, "line_items": [{"price": pro, "quantity": 1}],
             "success_url": "https://console.invalid/qa/success", "cancel_url": "https://console.invalid/qa/cancel",
             "metadata": {"qa_run": str(ctx.run_id), "qa_case": ctx.case_id}},
            idempotency_key=ctx.key("checkout"),
        )
        ctx.ids["checkout_session"] = session["id"]
        ctx.object_ids.add(session["id"])
        ctx.expect(bool(session.get("url")), "Checkout returns a payment page URL")
        completed = emulator_helper(ctx, f"checkout/sessions/{session['id']}/complete",
                                     {"payment_method": "pm_card_visa"}, step="checkout",
                                     manual="open the Checkout URL in a browser and pay with 4242 4242 4242 4242")
    subscription_id = (completed or {}).get("subscription")
    if isinstance(subscription_id, dict):
        subscription_id = subscription_id.get("id")
    if completed is None:
        # Real Stripe: Checkout needs a person in a browser; subscribe directly instead.
        ctx.notes.append("checkout completed by API (hosted Checkout needs a browser on real Stripe)")
        subscription_id = subscribe(ctx, "pro")["id"]
    elif not subscription_id:
        found = list(ctx.gateway.list_subscriptions(customer=ctx.customer_id))
        subscription_id = found[0]["id"] if found else None
    ctx.expect(bool(subscription_id), "completing Checkout creates a subscription")
    ctx.ids["subscription"] = subscription_id
    ctx.object_ids.add(str(subscription_id))
    wanted = {"customer.subscription.created", "invoice.paid"}
    if completed is not None:
        wanted.add("checkout.session.completed")
    expect_events(ctx, wanted)
    subscription = ctx.gateway.retrieve_subscription(subscription_id)
    ctx.expect(subscription.get("status") == "active", "Stripe subscription is active", subscription.get("status"))
    ctx.expect(item_price_id(subscription) == pro, "Stripe subscription is on the Pro monthly price",
               item_price_id(subscription))
    invoices = invoices_of(ctx, str(subscription_id))
    ctx.expect(bool(invoices) and invoices[0].get("status") == "paid", "the first invoice is paid",
               [i.get("status") for i in invoices])
    ctx.ids["invoice"] = invoices[0]["id"]
    expect_db_subscription(ctx, str(subscription_id), status="active", plan="pro", is_active=True)
    db_invoice = settled(lambda: db_invoice_row(ctx, invoices[0]["id"]), lambda r: bool(r) and r["status"] == "paid")
    ctx.expect(db_invoice is not None and db_invoice["status"] == "paid", "billing DB invoice is paid",
               db_invoice and db_invoice["status"])


def _case_upgrade(ctx: CaseContext) -> None:
    from services.plan_changes import upgrade

    subscription = subscribed(ctx, "basic")
    with ctx.step("upgrade"):
        upgrade(subscription["id"], "pro", "monthly", **ctx.as_system())
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(item_price_id(after) == plan_price(ctx, "pro"), "Stripe subscription is on Pro right away",
               item_price_id(after))
    upgrade_invoices = [i for i in invoices_of(ctx, subscription["id"])
                        if i.get("billing_reason") == "subscription_update"]
    ctx.expect(bool(upgrade_invoices), "an immediate upgrade invoice was created")
    invoice = upgrade_invoices[-1]
    ctx.ids["upgrade_invoice"] = invoice["id"]
    ctx.expect(invoice.get("status") == "paid" and int(invoice.get("amount_paid") or 0) > 0,
               "the prorated upgrade invoice is paid",
               f"{invoice.get('status')}, paid "
               f"{format_money(int(invoice.get('amount_paid') or 0), str(invoice.get('currency') or 'usd'))}")
    expect_events(ctx, {"customer.subscription.updated", "invoice.paid"})
    expect_db_subscription(ctx, subscription["id"], plan="pro", status="active")
    kinds = settled(lambda: db_change_kinds(ctx, subscription["id"]), lambda k: "upgrade" in k)
    ctx.expect("upgrade" in kinds, "the billing DB records the upgrade in plan history", kinds)


def _case_downgrade_scheduled(ctx: CaseContext) -> None:
    from services.plan_changes import schedule_downgrade

    subscription = subscribed(ctx, "pro")
    with ctx.step("schedule_downgrade"):
        schedule_downgrade(subscription["id"], "basic", "monthly", **ctx.as_system())
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("status") == "active", "Stripe subscription stays active", after.get("status"))
    ctx.expect(after.get("cancel_at_period_end") is True, "Stripe cancel_at_period_end is true",
               after.get("cancel_at_period_end"))
    ctx.expect((after.get("metadata") or {}).get("pending_plan") == "basic", "Stripe metadata.pending_plan is basic",
               (after.get("metadata") or {}).get("pending_plan"))
    ctx.expect(item_price_id(after) == plan_price(ctx, "pro"), "Stripe subscription stays on Pro until period end",
               item_price_id(after))
    expect_events(ctx, {"customer.subscription.updated"})
    expect_db_subscription(ctx, subscription["id"], plan="pro", pending_plan="basic", cancel_at_period_end=True)


def _case_reconciliation_applies(ctx: CaseContext) -> None:
    from services.plan_changes import schedule_downgrade
    from services.reconciliation import run_reconciliation
    from services.webhook_counts import QA_TRIGGER

    # Reconciliation runs over the whole account at the `now` we give it; a clock far in
    # the past puts this case's renewal where no real subscription's period end can be due.
    start_case(ctx, frozen_time=ctx.started_ts - PAST_CLOCK_OFFSET_SECONDS)
    subscription = subscribe(ctx, "pro")
    schedule_downgrade(subscription["id"], "basic", "monthly", **ctx.as_system())
    pull_events(ctx, {"customer.subscription.updated"})
    period_end = period_end_of(ctx.gateway.retrieve_subscription(subscription["id"]))
    ctx.expect(period_end > (ctx.clock_started_ts or 0), "the subscription has a period end", period_end)
    # Near renewal: inside the cron's lookahead window, before the period ends.
    near_renewal = period_end - ctx.settings.reconcile_cron_lookahead_seconds // 2
    advance_clock(ctx, near_renewal, "near-renewal")
    with ctx.step("reconcile"):
        report = run_reconciliation(settings=ctx.settings, uow=ctx.runtime.uow(), gateway=ctx.gateway, apply=True,
                                    actor=ctx.actor, trigger=QA_TRIGGER, now=near_renewal)
    ctx.ids["reconcile_run"] = report.run_id
    mine = [a for a in report.actions if a.subscription_id == subscription["id"]]
    ctx.expect(any(a.result == "applied" for a in mine), "reconciliation applied the downgrade",
               [(a.kind, a.result, a.error) for a in mine])
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("status") == "active", "Stripe subscription is still active after the downgrade",
               after.get("status"))
    ctx.expect(item_price_id(after) == plan_price(ctx, "basic"), "Stripe subscription switched to Basic",
               item_price_id(after))
    ctx.expect(not after.get("cancel_at_period_end"), "Stripe cancel_at_period_end is unset",
               after.get("cancel_at_period_end"))
    ctx.expect(not (after.get("metadata") or {}).get("pending_plan"), "Stripe metadata.pending_plan is cleared")
    advance_clock(ctx, period_end + RENEWAL_GRACE_SECONDS, "past-renewal")
    renewed = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(renewed.get("status") == "active", "the subscription renews (not canceled)", renewed.get("status"))
    cycle = [i for i in invoices_of(ctx, subscription["id"]) if i.get("billing_reason") == "subscription_cycle"]
    ctx.expect(bool(cycle), "a renewal invoice was created")
    lines = ((cycle[-1].get("lines") or {}).get("data")) or []
    prices = {((line.get("pricing") or {}).get("price_details") or {}).get("price") or
              (line.get("price") or {}).get("id") for line in lines}
    if prices - {None}:
        ctx.expect(plan_price(ctx, "basic") in prices, "the renewal invoice bills Basic",
                   sorted(p for p in prices if p))
    missing = pull_events(ctx, {"customer.subscription.updated", "invoice.paid"})
    ctx.expect(not missing, "Stripe sent the downgrade update and the renewal payment", missing or None)
    ctx.expect("customer.subscription.deleted" not in ctx.events.values(), "no customer.subscription.deleted event")
    expect_db_subscription(ctx, subscription["id"], plan="basic", pending_plan=None, cancel_at_period_end=False,
                            status="active")
    kinds = settled(lambda: db_change_kinds(ctx, subscription["id"]), lambda k: "downgrade_applied" in k)
    ctx.expect("downgrade_applied" in kinds, "the billing DB records downgrade_applied", kinds)


def _case_sca_required(ctx: CaseContext) -> None:
    start_case(ctx, card="pm_card_authenticationRequired")
    with ctx.step("subscribe_with_3ds_card"):
        subscription = ctx.gateway.create_subscription(
            {"customer": ctx.customer_id, "items": [{"price": plan_price(ctx, "pro")}],
             "payment_behavior": "allow_incomplete", "metadata": {"qa_run": str(ctx.run_id), "qa_case": ctx.case_id}},
            idempotency_key=ctx.key("subscribe:pro"),
        )
    ctx.ids["subscription"] = subscription["id"]
    ctx.object_ids.add(subscription["id"])
    ctx.expect(subscription.get("status") == "incomplete", "Stripe subscription waits for authentication (incomplete)",
               subscription.get("status"))
    invoices = invoices_of(ctx, subscription["id"])
    invoice_id = expect_open_invoice(ctx, invoices, "the first invoice is open, awaiting 3DS")
    expect_events(ctx, {"invoice.payment_action_required"})
    expect_invoice_recorded(ctx, invoice_id, "action_required_at")
    with ctx.step("complete_authentication"):
        intent_id = invoice_payment_intent(ctx.gateway.retrieve_invoice(invoice_id))
        ctx.ids["payment_intent"] = intent_id
        authenticated = emulator_helper(
            ctx, f"payment_intents/{intent_id}/authenticate", {}, step="complete_authentication",
            manual="open the invoice's hosted page in a browser and complete the 3-D Secure challenge",
        ) if intent_id else None
        if authenticated is None:
            # Real Stripe: the 3DS challenge needs a browser; complete with a card that needs none.
            ctx.notes.append("completed by paying with pm_card_visa (3DS challenge needs a browser on real Stripe)")
            method = ctx.gateway.attach_payment_method("pm_card_visa", ctx.customer_id,
                                                       idempotency_key=ctx.key("attach:completion"))
            pay_with(ctx, invoice_id, method["id"], "the invoice is paid after completing authentication")
    paid = ctx.gateway.retrieve_invoice(invoice_id)
    ctx.expect(paid.get("status") == "paid", "the invoice is paid after completion", paid.get("status"))
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("status") == "active", "Stripe subscription becomes active", after.get("status"))
    expect_events(ctx, {"invoice.paid"})
    expect_recovered(ctx, invoice_id, "customer_action")
    expect_db_subscription(ctx, subscription["id"], status="active")


def _case_past_due_recovered(ctx: CaseContext) -> None:
    start_case(ctx)
    subscription = subscribe(ctx, "basic")
    period_end = period_end_of(subscription) or period_end_of(ctx.gateway.retrieve_subscription(subscription["id"]))
    with ctx.step("switch_to_failing_card"):
        set_card(ctx, "pm_card_chargeCustomerFail", "failing")
    advance_clock(ctx, period_end + RENEWAL_GRACE_SECONDS, "renewal")
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("status") == "past_due", "Stripe subscription is past_due after the failed renewal",
               after.get("status"))
    cycle = [i for i in invoices_of(ctx, subscription["id"]) if i.get("billing_reason") == "subscription_cycle"]
    invoice_id = expect_open_invoice(ctx, cycle, "the renewal invoice is open (unpaid)")
    expect_events(ctx, {"invoice.payment_failed"})
    expect_invoice_recorded(ctx, invoice_id, "payment_failed_at")
    expect_db_subscription(ctx, subscription["id"], status="past_due")
    with ctx.step("update_card_and_pay"):
        new_card = set_card(ctx, "pm_card_visa", "updated")
        pay_with(ctx, invoice_id, new_card, "the renewal invoice is paid with the updated card")
    recovered = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(recovered.get("status") == "active", "Stripe subscription is active again", recovered.get("status"))
    expect_events(ctx, {"invoice.paid"})
    expect_recovered(ctx, invoice_id, "card_update")
    expect_db_subscription(ctx, subscription["id"], status="active", is_active=True)


def _case_portal_downgrade(ctx: CaseContext) -> None:
    subscription = subscribed(ctx, "pro")
    subscription_item_id = item_id(subscription)
    with ctx.step("portal_downgrade"):
        # What the customer portal sends for a plan switch configured without proration credit.
        ctx.gateway.update_subscription(subscription["id"],
                                        {"items": [{"id": subscription_item_id, "price": plan_price(ctx, "basic")}],
                                         "proration_behavior": "none"},
                                        idempotency_key=ctx.key("portal-switch"))
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(item_price_id(after) == plan_price(ctx, "basic"), "Stripe subscription is on Basic",
               item_price_id(after))
    ctx.expect(after.get("status") == "active", "Stripe subscription stays active", after.get("status"))
    expect_events(ctx, {"customer.subscription.updated"})
    expect_db_subscription(ctx, subscription["id"], plan="basic", status="active")
    kinds = settled(lambda: db_change_kinds(ctx, subscription["id"]), bool)
    ctx.expect(bool(kinds), "the billing DB records the plan change in history", kinds)


def _case_cancel_at_period_end(ctx: CaseContext) -> None:
    from services.plan_changes import cancel_at_period_end

    subscription = subscribed(ctx, "pro")
    with ctx.step("cancel_at_period_end"):
        cancel_at_period_end(subscription["id"], **ctx.as_system())
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("cancel_at_period_end") is True, "Stripe cancel_at_period_end is true",
               after.get("cancel_at_period_end"))
    ctx.expect(not (after.get("metadata") or {}).get("pending_plan"), "no pending_plan (a cancel, not a downgrade)")
    pull_events(ctx, {"customer.subscription.updated"})
    expect_db_subscription(ctx, subscription["id"], cancel_at_period_end=True, status="active")
    advance_clock(ctx, period_end_of(after) + RENEWAL_GRACE_SECONDS, "past-period-end")
    ended = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(ended.get("status") == "canceled", "Stripe subscription is canceled at period end", ended.get("status"))
    expect_events(ctx, {"customer.subscription.deleted"})
    expect_db_subscription(ctx, subscription["id"], status="canceled", is_active=False)


CASE_RUNNERS: dict[str, Callable[[CaseContext], None]] = {
    "new_subscription": _case_new_subscription,
    "upgrade": _case_upgrade,
    "downgrade_scheduled": _case_downgrade_scheduled,
    "reconciliation_applies": _case_reconciliation_applies,
    "sca_required": _case_sca_required,
    "past_due_recovered": _case_past_due_recovered,
    "portal_downgrade": _case_portal_downgrade,
    "cancel_at_period_end": _case_cancel_at_period_end,
}
