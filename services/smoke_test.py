"""The guided live smoke test (ALwrity §9: "complete a small real transaction in live mode;
verify the subscription is active, the internal dashboard reflects it, refund/portal flows work").

1. `start` (admin): a Checkout Session in mode `subscription` for `STRIPE_SMOKE_TEST_PRICE`
   in the console's current Stripe mode, tagged `metadata.smoke_test=<id>` on the session and
   (through `subscription_data.metadata`) on the subscription; the page shows its URL and a QR code.
2. A person pays on Stripe's page (in the demo the emulator's documented
   `POST /_emulator/checkout/sessions/<id>/complete` helper does it). `checkout.session.completed`
   arrives through the receiver and the worker; `record_checkout_completed` (called by the event
   handler) notes it on the row.
3. `run_checks` (admin; the Go-live page runs it as soon as the event is in): in order, the
   subscription is active at Stripe (and its first invoice paid), the billing DB and the console's
   search show it active, and a Customer Portal session can be created for the customer (key
   `smoke:<id>:portal:<n>`, n = the check run). The first failure stops the checks; a failed run can
   be checked again once the cause is fixed (`again=True`: "Run the checks again" on the page).
4. `refund_and_cancel` (admin, confirmed with the exact amount): refunds the payment and cancels
   the subscription, each with its own idempotency key (`smoke:<id>:refund`, `smoke:<id>:cancel:<n>`).

Every step is stored with pass/fail, ids, the amount (minor units + currency, shown through
services/money.py) and its time. A run whose every step passed ticks the `live_test_charge`
checklist item (the note names the mode and the run); sign-off freezes the latest run.
Smoke-test objects carry `metadata.smoke_test`, which keeps them out of the first-24h figures.

This module holds the actions; the checks are in services/smoke_test_checks.py, the read model
(a run as shown, the step table, the QR code) in services/smoke_test_view.py, the queries in
db/repositories/smoke_tests.py.
"""

from __future__ import annotations

from typing import Any

from db.models import ChecklistItem, SmokeTest
from db.models.base import from_unix, utcnow
from db.repositories import smoke_tests
from db.session import UnitOfWork
from services.audit import privileged, record
from services.config import Settings
from services.money import format_money
from services.smoke_test_checks import CHECK_STEPS, CheckRun, SmokeTestError, check_price, run_all, stripe_id
from services.smoke_test_view import (
    IN_PROGRESS,
    STEPS,
    UNFINISHED_PAID,
    frozen_for_signoff,
    get,
    latest,
    qr_png,
    step,
    step_rows,
    view,
    when_text,
)
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.webhook_counts import SMOKE_TEST_METADATA

# The page, the sign-off and the event handler reach the whole smoke test through this module.
__all__ = ["STEPS", "SmokeTestError", "check_price", "frozen_for_signoff", "get", "latest", "qr_png",
           "record_checkout_completed", "refund_and_cancel", "run_checks", "start", "step_rows", "when_text"]

METADATA_KEY = SMOKE_TEST_METADATA  # metadata.smoke_test=<run id> on the session and subscription
CHECKLIST_KEY = "live_test_charge"
# Checks may run again after a failure (e.g. the billing DB lagged while processing was paused)
# or when a checker died half-way, but never once the refund was attempted.
RECHECKABLE = ("failed", "checking")


# --- 1. start ----------------------------------------------------------------------------------------------
@privileged("smoke.start")
def start(*, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway) -> dict[str, Any]:
    """Create the Checkout Session for a new run. An earlier run nobody paid is abandoned and its
    Checkout Session expired at Stripe (so it can no longer be paid); a run that was paid and not
    refunded yet must be finished first."""
    try:
        price = check_price(settings, gateway)
        _close_earlier_runs(actor, uow, gateway)
    except SmokeTestError as error:
        with uow:
            record(uow, actor=actor, action="smoke.start", result="refused", target="smoke_test",
                   error=error.message)
            uow.commit()
        raise
    with uow:
        smoke_id = smoke_tests.add(uow, SmokeTest(started_by=actor, mode=settings.stripe_mode,
                                                  price_id=price.price_id, status="open", amount=price.amount,
                                                  currency=price.currency, steps=[]))
        uow.commit()
    key = f"smoke:{smoke_id}:checkout"
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": price.price_id, "quantity": 1}],
        "client_reference_id": f"smoke_test_{smoke_id}",
        "metadata": {METADATA_KEY: str(smoke_id)},
        "subscription_data": {"metadata": {METADATA_KEY: str(smoke_id)}},
    }
    if settings.smoke_test_return_url:
        params["success_url"] = settings.smoke_test_return_url
        params["cancel_url"] = settings.smoke_test_return_url
    try:
        session = gateway.create_checkout_session(params, idempotency_key=key)
    except StripeGatewayError as error:
        with uow:
            row = smoke_tests.require(uow, smoke_id)
            row.steps = [step("checkout_created", False, error.message, price=price.price_id)]
            row.status, row.finished_at, row.finished_by = "failed", utcnow(), actor
            record(uow, actor=actor, action="smoke.start", result="error", target=f"smoke_test:{smoke_id}",
                   idempotency_key=key, error=error.message)
            uow.commit()
        raise
    with uow:
        row = smoke_tests.require(uow, smoke_id)
        row.checkout_session_id = session["id"]
        row.checkout_url = session.get("url")
        row.steps = [step("checkout_created", True,
                           f"{price.amount_text} {price.interval} ({price.product or price.price_id}) in "
                           f"{settings.stripe_mode} mode", checkout_session=session["id"], price=price.price_id)]
        record(uow, actor=actor, action="smoke.start", result="ok", target=f"smoke_test:{smoke_id}",
               idempotency_key=key, details={"checkout_session": session["id"], "price": price.price_id,
                                             "amount": price.amount, "currency": price.currency,
                                             "mode": settings.stripe_mode})
        uow.commit()
        return view(row)


def _close_earlier_runs(actor: str, uow: UnitOfWork, gateway: StripeGateway) -> None:
    with uow:
        earlier = [(r.id, r.status, r.checkout_session_id, r.completed_at)
                   for r in smoke_tests.with_status(uow, (*IN_PROGRESS, *UNFINISHED_PAID))]
    for smoke_id, status, session_id, completed_at in earlier:
        if completed_at is not None:
            raise SmokeTestError(f"Smoke test #{smoke_id} was paid and is not refunded yet: finish it first "
                                 "(Refund and cancel).")
        if status != "open":
            continue
        detail = "abandoned: a new smoke test was started"
        if session_id:
            try:
                gateway.expire_checkout_session(session_id, idempotency_key=f"smoke:{smoke_id}:expire")
                detail += f"; Checkout Session {session_id} expired at Stripe"
            except StripeGatewayError as error:
                if gateway.retrieve_checkout_session(session_id).get("status") == "complete":
                    raise SmokeTestError(f"Smoke test #{smoke_id} was just paid: wait for checkout.session.completed "
                                         "and finish it first.") from None
                detail += f"; expiring its Checkout Session: {error.message}"
        with uow:
            row = smoke_tests.get(uow, smoke_id)
            if row is not None and row.status == "open":
                row.status, row.finished_at, row.finished_by = "abandoned", utcnow(), actor
                row.steps = [*row.steps, {**step("checkout_completed", False, detail), "title": "Abandoned"}]
                record(uow, actor=actor, action="smoke.abandon", result="ok", target=f"smoke_test:{smoke_id}",
                       idempotency_key=f"smoke:{smoke_id}:expire", details={"checkout_session": session_id})
            uow.commit()


# --- 2. the event ---------------------------------------------------------------------------------------------
def record_checkout_completed(uow: UnitOfWork, session: dict[str, Any], event: dict[str, Any]) -> bool:
    """Called by the checkout.session.completed handler inside its transaction; True when it was
    a smoke test's session (idempotent: a replayed event changes nothing)."""
    row = smoke_tests.by_checkout_session(uow, session.get("id"))
    if row is None or row.status not in ("open", "abandoned"):
        return row is not None
    # Abandoned but paid after all (the buyer finished just before it expired): it needs its checks
    # and above all its refund, so it comes back (and `latest` shows it first).
    row.status = "completed"
    row.finished_at = row.finished_by = None
    row.completed_at = from_unix(event.get("created")) or utcnow()
    row.completed_event_id = event.get("id")
    row.customer_id = stripe_id(session.get("customer"))
    row.subscription_id = stripe_id(session.get("subscription"))
    row.steps = [*row.steps, step("checkout_completed", True,
                                   f"event {event.get('id')} at {row.completed_at:%Y-%m-%d %H:%M:%S} UTC, "
                                   f"payment status {session.get('payment_status')}",
                                   event=event.get("id"), customer=row.customer_id, subscription=row.subscription_id)]
    return True


@privileged("smoke.check")
def run_checks(smoke_id: int, *, actor: str, settings: Settings, uow: UnitOfWork,
               gateway: StripeGateway, again: bool = False) -> dict[str, Any]:
    """Once checkout.session.completed is in: subscription at Stripe, billing DB + console, portal.
    One caller claims the run (completed -> checking), so two open pages never check twice;
    `again` re-runs the checks of a failed (or stuck) run, replacing their earlier results."""
    statuses = ("completed", *RECHECKABLE) if again else ("completed",)
    with uow:
        current = smoke_tests.get(uow, smoke_id)
        if again and current is not None and any(s["step"] in ("refund", "cancel") for s in current.steps):
            statuses = ("completed",)
        claimed = smoke_tests.claim(uow, smoke_id, statuses=statuses, to="checking")
        row = smoke_tests.get(uow, smoke_id)
        if row is None:
            raise SmokeTestError("There is no such smoke test; reload the page.")
        if not claimed:
            return view(row)
        # Each check run is its own portal request: a retry after a refused one must not replay it.
        attempt = 1 + smoke_tests.audited_attempts(uow, "smoke.check", smoke_id)
        uow.commit()
        run = CheckRun(row.id, row.customer_id, row.subscription_id, row.currency, row.amount, attempt=attempt)
    steps = run_all(run, uow=uow, settings=settings, gateway=gateway)
    failed = [s["step"] for s in steps if not s["passed"]]
    with uow:
        row = smoke_tests.require(uow, smoke_id)
        row.steps = [*(s for s in row.steps if s["step"] not in CHECK_STEPS), *steps]
        row.invoice_id, row.payment_intent_id = run.invoice_id, run.payment_intent_id
        row.amount, row.currency = run.amount, run.currency
        row.status = "failed" if failed else "checked"
        record(uow, actor=actor, action="smoke.check", result="error" if failed else "ok",
               target=f"smoke_test:{smoke_id}", details={"steps": [[s["step"], s["passed"]] for s in steps]},
               error=f"failed: {', '.join(failed)}" if failed else None)
        uow.commit()
        return view(row)


# --- 4. refund and cancel ----------------------------------------------------------------------------------
@privileged("smoke.refund_and_cancel")
def refund_and_cancel(smoke_id: int, *, confirmed_amount: int, actor: str, settings: Settings, uow: UnitOfWork,
                      gateway: StripeGateway) -> dict[str, Any]:
    """Refund the smoke test's payment in full and cancel its subscription now (one confirmed action)."""
    with uow:
        row = smoke_tests.get(uow, smoke_id)
        if row is None:
            raise SmokeTestError("There is no such smoke test; reload the page.")
        refusal = None
        if row.status not in ("checked", "failed", "cleanup_failed") or not row.subscription_id:
            refusal = "Nothing to refund yet: the checks run once checkout.session.completed has arrived."
        elif not row.payment_intent_id:
            refusal = "No payment was found on the subscription's first invoice, so there is nothing to refund."
        elif confirmed_amount != row.amount:
            refusal = (f"The confirmed amount {format_money(confirmed_amount, row.currency or 'usd')} is not the "
                       f"payment's {format_money(row.amount or 0, row.currency or 'usd')}; reload and confirm again.")
        if refusal:
            record(uow, actor=actor, action="smoke.refund_and_cancel", result="refused",
                   target=f"smoke_test:{smoke_id}", error=refusal)
            uow.commit()
            raise SmokeTestError(refusal)
        payment_intent, subscription_id, amount = row.payment_intent_id, str(row.subscription_id), row.amount
        currency = row.currency or "usd"
        steps = [s for s in row.steps if s["step"] not in ("refund", "cancel")]
        tries = 1 + smoke_tests.audited_attempts(uow, "smoke.refund_and_cancel", smoke_id, results=("ok", "error"))
    # One refund ever (a retry replays it); each try's cancel is its own request, so a refused
    # cancel can be tried again once its cause is fixed.
    refund_key, cancel_key = f"smoke:{smoke_id}:refund", f"smoke:{smoke_id}:cancel:{tries}"
    errors: list[str] = []
    refund_id = None
    try:
        refund = gateway.create_refund({"payment_intent": payment_intent}, idempotency_key=refund_key)
        refund_id = refund.get("id")
        steps.append(step("refund", refund.get("status") in ("succeeded", "pending"),
                           f"{format_money(int(refund.get('amount') or 0), currency)} refunded "
                           f"({refund.get('status')})", refund=refund_id, payment_intent=payment_intent))
    except StripeGatewayError as error:
        errors.append(error.message)
        steps.append(step("refund", False, error.message, payment_intent=payment_intent))
    try:
        cancelled = gateway.cancel_subscription(subscription_id, idempotency_key=cancel_key)
        steps.append(step("cancel", cancelled.get("status") == "canceled", f"status {cancelled.get('status')}",
                           subscription=subscription_id))
    except StripeGatewayError as error:
        errors.append(error.message)
        steps.append(step("cancel", False, error.message, subscription=subscription_id))
    with uow:
        row = smoke_tests.require(uow, smoke_id)
        row.steps = steps
        row.refund_id = refund_id or row.refund_id
        row.finished_at, row.finished_by = utcnow(), actor
        result = view(row)
        row.status = "passed" if result["passed"] else ("cleanup_failed" if errors else "failed")
        record(uow, actor=actor, action="smoke.refund_and_cancel", result="error" if errors else "ok",
               target=f"smoke_test:{smoke_id}", idempotency_key=refund_key,
               details={"refund": refund_id, "amount": amount, "currency": currency, "subscription": subscription_id,
                        "cancel_key": cancel_key}, error="; ".join(errors) or None)
        if row.status == "passed":
            _tick_checklist(uow, row, actor)
        uow.commit()
        return view(row)


def _tick_checklist(uow: UnitOfWork, row: SmokeTest, actor: str) -> None:
    """A run whose every step passed ticks `live_test_charge` (one audited checklist edit)."""
    from services.checklist import SEED_BY_KEY

    item = smoke_tests.checklist_item(uow, CHECKLIST_KEY)
    if item is None:
        seed = SEED_BY_KEY[CHECKLIST_KEY]
        item = ChecklistItem(key=seed.key, section=seed.section, title=seed.title, detail=seed.detail, status="open")
        smoke_tests.add_checklist_item(uow, item)
    before = {"owner": item.owner, "status": item.status, "note": item.note}
    amount = format_money(row.amount or 0, row.currency or "usd")
    item.status = "done"
    item.owner = item.owner or actor
    item.note = (f"Smoke test #{row.id} passed in {row.mode} mode: {amount} paid through Checkout "
                 f"({row.checkout_session_id}), subscription {row.subscription_id} active, billing DB and console "
                 f"showed it, portal session created, refunded ({row.refund_id}) and cancelled at "
                 f"{row.finished_at:%Y-%m-%d %H:%M} UTC.")
    item.updated_by, item.updated_at = actor, utcnow()
    record(uow, actor=actor, action="checklist.update", result="ok", target=f"checklist:{CHECKLIST_KEY}",
           idempotency_key=f"checklist:{CHECKLIST_KEY}:smoke:{row.id}",
           details={"before": before, "after": {"owner": item.owner, "status": "done", "note": item.note},
                    "by": f"smoke_test:{row.id}"})


