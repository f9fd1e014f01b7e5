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
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from db.models import AuditLog, ChecklistItem, SmokeTest, UserSubscription
from db.models.base import from_unix, utcnow
from db.session import UnitOfWork, rows_affected
from services.audit import privileged, record
from services.config import Settings
from services.errors import ConsoleError
from services.money import format_money
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.webhook_counts import SMOKE_TEST_METADATA

METADATA_KEY = SMOKE_TEST_METADATA  # metadata.smoke_test=<run id> on the session and subscription
CHECKLIST_KEY = "live_test_charge"
IN_PROGRESS = ("open", "completed", "checking")
STEPS = (
    ("checkout_created", "Checkout Session created"),
    ("checkout_completed", "checkout.session.completed received"),
    ("subscription_active", "Subscription active at Stripe"),
    ("billing_db", "Billing DB and console show it"),
    ("portal_session", "Customer Portal session created"),
    ("refund", "Payment refunded"),
    ("cancel", "Subscription cancelled"),
)
STEP_TITLES = dict(STEPS)


class SmokeTestError(ConsoleError):
    """The smoke test cannot do this now; the message says why and what to do."""


@dataclass(frozen=True)
class PriceCheck:
    price_id: str
    amount: int
    currency: str
    interval: str
    product: str

    @property
    def amount_text(self) -> str:
        return format_money(self.amount, self.currency)


def _step(name: str, passed: bool, detail: str, **ids: Any) -> dict[str, Any]:
    return {"step": name, "title": STEP_TITLES[name], "passed": passed, "detail": detail,
            "ids": {k: v for k, v in ids.items() if v is not None}, "at": utcnow().isoformat(timespec="seconds")}


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) and value else None


# --- reading -----------------------------------------------------------------------------------------
def view(row: SmokeTest) -> dict[str, Any]:
    steps = list(row.steps or [])
    done = {s["step"] for s in steps if s.get("passed")}
    return {
        "id": row.id, "status": row.status, "mode": row.mode, "price_id": row.price_id,
        "started_at": row.started_at.isoformat(timespec="seconds"), "started_by": row.started_by,
        "checkout_session_id": row.checkout_session_id, "checkout_url": row.checkout_url,
        "completed_at": row.completed_at.isoformat(timespec="seconds") if row.completed_at else None,
        "customer_id": row.customer_id, "subscription_id": row.subscription_id, "invoice_id": row.invoice_id,
        "payment_intent_id": row.payment_intent_id, "refund_id": row.refund_id,
        "amount": row.amount, "currency": row.currency,
        "amount_text": format_money(row.amount, row.currency) if row.amount is not None and row.currency else None,
        "steps": steps,
        "passed": all(name in done for name, _title in STEPS),
        "failed": any(not s.get("passed") for s in steps),
        "finished_at": row.finished_at.isoformat(timespec="seconds") if row.finished_at else None,
        "finished_by": row.finished_by,
    }


UNFINISHED_PAID = ("completed", "checking", "checked", "failed", "cleanup_failed")


def latest(uow: UnitOfWork) -> dict[str, Any] | None:
    """The run to show: one that was paid and is not refunded yet if there is one, else the newest."""
    with uow:
        row = uow.session.execute(select(SmokeTest).where(
            SmokeTest.status.in_(UNFINISHED_PAID), SmokeTest.completed_at.is_not(None))
            .order_by(SmokeTest.id.desc()).limit(1)).scalar_one_or_none()
        if row is None:
            row = uow.session.execute(select(SmokeTest).order_by(SmokeTest.id.desc()).limit(1)).scalar_one_or_none()
        return view(row) if row else None


def get(uow: UnitOfWork, smoke_id: int) -> dict[str, Any] | None:
    with uow:
        row = uow.session.get(SmokeTest, smoke_id)
        return view(row) if row else None


def frozen_for_signoff(uow: UnitOfWork) -> dict[str, Any] | None:
    """The latest run as the sign-off record freezes it."""
    current = latest(uow)
    if current is None:
        return None
    keep = ("id", "status", "mode", "passed", "started_by", "started_at", "finished_at", "checkout_session_id",
            "subscription_id", "customer_id", "refund_id", "amount", "currency", "amount_text", "steps")
    return {k: current[k] for k in keep}


def qr_png(url: str, *, scale: int = 6) -> bytes:
    """The Checkout URL as a QR code (PNG), for paying from a phone."""
    import segno

    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=scale, border=2)
    return buffer.getvalue()


def check_price(settings: Settings, gateway: StripeGateway) -> PriceCheck:
    """The configured price exists in this mode, is active and recurring (Checkout's subscription mode)."""
    price_id = settings.stripe_smoke_test_price
    if not price_id:
        raise SmokeTestError("No smoke-test price is configured: set STRIPE_SMOKE_TEST_PRICE to the price_... id "
                             "of the cheapest recurring price the account sells.")
    try:
        price = gateway.retrieve_price(price_id)
    except StripeGatewayError as error:
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id}: {error.message}") from None
    if bool(price.get("livemode")) != (settings.stripe_mode == "live"):
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id} belongs to the other Stripe mode.")
    if not price.get("active"):
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id} is archived (inactive) at Stripe.")
    recurring = price.get("recurring") or {}
    if not recurring:
        raise SmokeTestError(f"STRIPE_SMOKE_TEST_PRICE {price_id} is a one-time price; the smoke test buys a "
                             "subscription, so use a recurring price.")
    product = price.get("product")
    name = product.get("name") if isinstance(product, dict) else str(product or "")
    count = int(recurring.get("interval_count") or 1)
    interval = f"every {count} {recurring.get('interval')}s" if count > 1 else f"per {recurring.get('interval')}"
    return PriceCheck(price_id, int(price.get("unit_amount") or 0), str(price.get("currency") or "usd"), interval,
                      name or "")


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
        row = SmokeTest(started_by=actor, mode=settings.stripe_mode, price_id=price.price_id, status="open",
                        amount=price.amount, currency=price.currency, steps=[])
        uow.session.add(row)
        uow.session.flush()
        smoke_id = row.id
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
            failed_row = uow.session.get(SmokeTest, smoke_id)
            assert failed_row is not None
            row = failed_row
            row.steps = [_step("checkout_created", False, error.message, price=price.price_id)]
            row.status, row.finished_at, row.finished_by = "failed", utcnow(), actor
            record(uow, actor=actor, action="smoke.start", result="error", target=f"smoke_test:{smoke_id}",
                   idempotency_key=key, error=error.message)
            uow.commit()
        raise
    with uow:
        stored = uow.session.get(SmokeTest, smoke_id)
        assert stored is not None
        row = stored
        row.checkout_session_id = session["id"]
        row.checkout_url = session.get("url")
        row.steps = [_step("checkout_created", True,
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
        earlier = [(r.id, r.status, r.checkout_session_id, r.completed_at) for r in uow.session.execute(
            select(SmokeTest).where(SmokeTest.status.in_((*IN_PROGRESS, *UNFINISHED_PAID))))
            .scalars()]
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
            row = uow.session.get(SmokeTest, smoke_id)
            if row is not None and row.status == "open":
                row.status, row.finished_at, row.finished_by = "abandoned", utcnow(), actor
                row.steps = [*row.steps, {**_step("checkout_completed", False, detail), "title": "Abandoned"}]
                record(uow, actor=actor, action="smoke.abandon", result="ok", target=f"smoke_test:{smoke_id}",
                       idempotency_key=f"smoke:{smoke_id}:expire", details={"checkout_session": session_id})
            uow.commit()


# --- 2. the event ---------------------------------------------------------------------------------------------
def record_checkout_completed(uow: UnitOfWork, session: dict[str, Any], event: dict[str, Any]) -> bool:
    """Called by the checkout.session.completed handler inside its transaction; True when it was
    a smoke test's session (idempotent: a replayed event changes nothing)."""
    row = uow.session.execute(
        select(SmokeTest).where(SmokeTest.checkout_session_id == session.get("id"))).scalar_one_or_none()
    if row is None or row.status not in ("open", "abandoned"):
        return row is not None
    # Abandoned but paid after all (the buyer finished just before it expired): it needs its checks
    # and above all its refund, so it comes back (and `latest` shows it first).
    row.status = "completed"
    row.finished_at = row.finished_by = None
    row.completed_at = from_unix(event.get("created")) or utcnow()
    row.completed_event_id = event.get("id")
    row.customer_id = _id(session.get("customer"))
    row.subscription_id = _id(session.get("subscription"))
    row.steps = [*row.steps, _step("checkout_completed", True,
                                   f"event {event.get('id')} at {row.completed_at:%Y-%m-%d %H:%M:%S} UTC, "
                                   f"payment status {session.get('payment_status')}",
                                   event=event.get("id"), customer=row.customer_id, subscription=row.subscription_id)]
    return True


# --- 3. checks ------------------------------------------------------------------------------------------------
def _payment_intent(invoice: dict[str, Any]) -> str | None:
    for payment in ((invoice.get("payments") or {}).get("data") or []):
        intent = _id((payment.get("payment") or {}).get("payment_intent"))
        if intent:
            return intent
    return None


@dataclass
class _Run:
    """What the checks need from the row, read in one short transaction (no transaction is held
    across a Stripe call or the console's own read)."""

    id: int
    customer_id: str | None
    subscription_id: str | None
    currency: str | None
    amount: int | None = None
    invoice_id: str | None = None
    payment_intent_id: str | None = None
    attempt: int = 1


def _check_subscription(run: _Run, gateway: StripeGateway) -> dict[str, Any]:
    if not run.subscription_id:
        return _step("subscription_active", False, "The completed Checkout Session names no subscription.")
    try:
        subscription = gateway.retrieve_subscription(run.subscription_id)
        invoice_id = _id(subscription.get("latest_invoice"))
        invoice = gateway.retrieve_invoice(invoice_id, expand=["payments"]) if invoice_id else {}
    except StripeGatewayError as error:
        return _step("subscription_active", False, error.message, subscription=run.subscription_id)
    run.invoice_id = invoice_id
    run.payment_intent_id = _payment_intent(invoice)
    if invoice:
        run.amount, run.currency = int(invoice.get("amount_paid") or 0), str(invoice.get("currency") or run.currency)
    status = subscription.get("status")
    paid = invoice.get("status") == "paid"
    amount = format_money(run.amount or 0, run.currency or "usd")
    ok = status == "active" and paid and run.payment_intent_id is not None
    detail = f"status {status}; first invoice {invoice_id or '-'} {invoice.get('status') or '-'}, {amount} paid"
    return _step("subscription_active", ok, detail, subscription=run.subscription_id, invoice=invoice_id,
                 payment_intent=run.payment_intent_id)


def _check_billing_db(run: _Run, uow: UnitOfWork) -> dict[str, Any]:
    from services.search import search

    with uow:
        stored = uow.session.execute(select(UserSubscription).where(
            UserSubscription.stripe_subscription_id == run.subscription_id)).scalar_one_or_none()
    if stored is None:
        return _step("billing_db", False, "The billing DB has no row for the subscription (is the worker running, "
                                          "and processing not paused?).", subscription=run.subscription_id)
    # What the console shows: its own search (sidebar and Search page) finds the subscription.
    hits = [h for h in search(uow, run.subscription_id or "") if h.kind == "subscription"]
    ok = stored.is_active and stored.status == "active" and bool(hits)
    detail = (f"billing DB: {stored.status}, price {stored.stripe_price_id}; console search: "
              + (hits[0].title if hits else "not found"))
    return _step("billing_db", ok, detail, subscription=run.subscription_id, customer=stored.stripe_customer_id)


def _check_portal(run: _Run, settings: Settings, gateway: StripeGateway) -> dict[str, Any]:
    params: dict[str, Any] = {"customer": run.customer_id}
    if settings.smoke_test_return_url:
        params["return_url"] = settings.smoke_test_return_url
    try:
        portal = gateway.create_portal_session(params, idempotency_key=f"smoke:{run.id}:portal:{run.attempt}")
    except StripeGatewayError as error:
        return _step("portal_session", False, error.message, customer=run.customer_id)
    ok = str(portal.get("url") or "").startswith("https://")
    # The URL signs the customer in to their portal, so only its id and configuration are kept.
    return _step("portal_session", ok, f"portal URL issued (configuration {portal.get('configuration')})",
                 portal_session=portal.get("id"), customer=run.customer_id)


CHECK_STEPS = ("subscription_active", "billing_db", "portal_session")
# Checks may run again after a failure (e.g. the billing DB lagged while processing was paused)
# or when a checker died half-way, but never once the refund was attempted.
RECHECKABLE = ("failed", "checking")


@privileged("smoke.check")
def run_checks(smoke_id: int, *, actor: str, settings: Settings, uow: UnitOfWork,
               gateway: StripeGateway, again: bool = False) -> dict[str, Any]:
    """Once checkout.session.completed is in: subscription at Stripe, billing DB + console, portal.
    One caller claims the run (completed -> checking), so two open pages never check twice;
    `again` re-runs the checks of a failed (or stuck) run, replacing their earlier results."""
    statuses = ("completed", *RECHECKABLE) if again else ("completed",)
    with uow:
        current = uow.session.get(SmokeTest, smoke_id)
        if again and current is not None and any(s["step"] in ("refund", "cancel") for s in current.steps):
            statuses = ("completed",)
        claimed = uow.session.execute(update(SmokeTest).where(SmokeTest.id == smoke_id,
                                                              SmokeTest.status.in_(statuses),
                                                              SmokeTest.completed_at.is_not(None))
                                      .values(status="checking"))
        row = uow.session.get(SmokeTest, smoke_id)
        if row is None:
            raise SmokeTestError("There is no such smoke test; reload the page.")
        if not rows_affected(claimed):
            return view(row)
        # Each check run is its own portal request: a retry after a refused one must not replay it.
        attempt = 1 + int(uow.session.execute(select(func.count(AuditLog.id)).where(
            AuditLog.action == "smoke.check", AuditLog.target == f"smoke_test:{smoke_id}")).scalar() or 0)
        uow.commit()
        run = _Run(row.id, row.customer_id, row.subscription_id, row.currency, row.amount, attempt=attempt)
    steps: list[dict[str, Any]] = []
    for check in CHECK_STEPS:
        if check == "subscription_active":
            step = _check_subscription(run, gateway)
        elif check == "billing_db":
            step = _check_billing_db(run, uow)
        else:
            step = _check_portal(run, settings, gateway)
        steps.append(step)
        if not step["passed"]:
            break
    failed = [s["step"] for s in steps if not s["passed"]]
    with uow:
        row = uow.session.get(SmokeTest, smoke_id)
        assert row is not None
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
        row = uow.session.get(SmokeTest, smoke_id)
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
        tries = 1 + int(uow.session.execute(select(func.count(AuditLog.id)).where(
            AuditLog.action == "smoke.refund_and_cancel", AuditLog.target == f"smoke_test:{smoke_id}",
            AuditLog.result.in_(("ok", "error")))).scalar() or 0)
    # One refund ever (a retry replays it); each try's cancel is its own request, so a refused
    # cancel can be tried again once its cause is fixed.
    refund_key, cancel_key = f"smoke:{smoke_id}:refund", f"smoke:{smoke_id}:cancel:{tries}"
    errors: list[str] = []
    refund_id = None
    try:
        refund = gateway.create_refund({"payment_intent": payment_intent}, idempotency_key=refund_key)
        refund_id = refund.get("id")
        steps.append(_step("refund", refund.get("status") in ("succeeded", "pending"),
                           f"{format_money(int(refund.get('amount') or 0), currency)} refunded "
                           f"({refund.get('status')})", refund=refund_id, payment_intent=payment_intent))
    except StripeGatewayError as error:
        errors.append(error.message)
        steps.append(_step("refund", False, error.message, payment_intent=payment_intent))
    try:
        cancelled = gateway.cancel_subscription(subscription_id, idempotency_key=cancel_key)
        steps.append(_step("cancel", cancelled.get("status") == "canceled", f"status {cancelled.get('status')}",
                           subscription=subscription_id))
    except StripeGatewayError as error:
        errors.append(error.message)
        steps.append(_step("cancel", False, error.message, subscription=subscription_id))
    with uow:
        row = uow.session.get(SmokeTest, smoke_id)
        assert row is not None
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

    item = uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == CHECKLIST_KEY)).scalar_one_or_none()
    if item is None:
        seed = SEED_BY_KEY[CHECKLIST_KEY]
        item = ChecklistItem(key=seed.key, section=seed.section, title=seed.title, detail=seed.detail, status="open")
        uow.session.add(item)
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


def step_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each step for a table: the seven steps in order, not-yet-run ones as waiting."""
    by_name = {s["step"]: s for s in result.get("steps") or []}
    rows = []
    for name, title in STEPS:
        step = by_name.get(name)
        rows.append({"step": title, "result": ("PASS" if step["passed"] else "FAIL") if step else "waiting",
                     "detail": step["detail"] if step else "",
                     "ids": ", ".join(f"{k} {v}" for k, v in (step or {}).get("ids", {}).items()),
                     "at": when_text(step["at"]) if step else ""})
    return rows


def when_text(iso: str | None) -> str:
    """A stored ISO time as people read it: "2026-12-04 18:19:04 UTC"."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment.tzinfo else f"{moment:%Y-%m-%d %H:%M:%S} UTC"
