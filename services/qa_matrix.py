"""The runbook's 8-case plan-change QA matrix, run against Stripe test mode.

Each case stands alone: its own test clock and customer (Stripe's test card
tokens), actions through the console's own services (plan_changes,
reconciliation), then the resulting events pulled from the Events API and
ingested like a sync would, and finally three kinds of expectation: Stripe's
state, the events seen and the billing-DB rows. A failed expectation is
recorded in words with the evidence (ids, events, timings). Live mode is
refused: the matrix creates customers and charges test cards.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.models import Invoice, PlanChange, QaResult, QaRun, UserSubscription
from db.models.base import utcnow
from db.session import UnitOfWork
from services import metric_points
from services.audit import SystemCaller, privileged, record
from services.config import Settings
from services.emulator_client import emulator_call
from services.errors import ConsoleError
from services.money import format_money
from services.runtime import Runtime
from services.stripe_gateway import StripeGatewayError
from services.stripe_objects import item_id, item_price_id, subscription_period

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "billing-ops-console"
# How long to wait for Stripe to emit a case's events / finish advancing a clock.
EVENT_WAIT_SECONDS = 30.0
CLOCK_WAIT_SECONDS = 90.0
POLL_SECONDS = 0.25
DB_SETTLE_SECONDS = 5.0
# Stripe finalizes a renewal invoice about an hour after the period ends, then charges it.
RENEWAL_GRACE_SECONDS = 2 * 3600
PASSED_STATUSES = ("passed", "manual_pass")
PAST_CLOCK_OFFSET_SECONDS = 400 * 24 * 3600
ProgressCallback = Callable[[int, int, str, str], None]


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


class QaRefused(ConsoleError):
    """A QA run was refused (e.g. live mode)."""


class ExpectationFailed(Exception):
    def __init__(self, expectation: str) -> None:
        super().__init__(expectation)
        self.expectation = expectation


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The running code: the git short hash when available, else the package version."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return importlib.metadata.version(PACKAGE_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class CaseOutcome:
    case_id: str
    status: str  # passed | failed | error
    failed_expectation: str | None
    evidence: dict[str, Any]
    duration_ms: int


@dataclass
class CaseContext:
    runtime: Runtime
    run_id: int
    case_id: str
    actor: str
    started_ts: int = field(default_factory=lambda: int(time.time()))
    clock_id: str | None = None
    clock_started_ts: int | None = None
    clock_time: int | None = None  # the clock's frozen time now
    customer_id: str | None = None
    object_ids: set[str] = field(default_factory=set)
    events: dict[str, str] = field(default_factory=dict)  # event id -> type, in arrival order
    expectations: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, int] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> Any:
        return self.runtime.gateway

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def system_actor(self) -> SystemCaller:
        """The run was authorised as a whole (`run_matrix` is privileged); its cases act under it."""
        return SystemCaller(self.actor)

    def key(self, intent: str) -> str:
        return f"qa:{self.run_id}:{self.case_id}:{intent}"

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings_ms[name] = int((time.monotonic() - started) * 1000)

    def expect(self, passed: bool, expectation: str, observed: Any = None) -> None:
        self.expectations.append({"expectation": expectation, "passed": bool(passed), "observed": observed})
        if not passed:
            raise ExpectationFailed(expectation if observed is None else f"{expectation} (saw: {observed})")

    def evidence(self) -> dict[str, Any]:
        return {
            "ids": {"test_clock": self.clock_id, "customer": self.customer_id, **self.ids},
            "events": [{"id": event_id, "type": kind} for event_id, kind in self.events.items()],
            "expectations": self.expectations,
            "timings_ms": self.timings_ms,
            "notes": self.notes,
        }


# --- Stripe helpers --------------------------------------------------------------------
def _price(ctx: CaseContext, plan: str) -> str:
    price_id = ctx.settings.price_id(plan, "monthly")
    if not price_id:
        raise ExpectationFailed(f"{plan}.monthly is mapped to a price (set the price mapping)")
    return price_id


def _start(ctx: CaseContext, card: str = "pm_card_visa", *, frozen_time: int | None = None) -> None:
    """A fresh test clock and customer whose default card is a Stripe test token."""
    with ctx.step("create_clock_and_customer"):
        clock = ctx.gateway.create_test_clock(frozen_time or ctx.started_ts, f"QA {ctx.run_id} {ctx.case_id}",
                                              idempotency_key=ctx.key("clock"))
        ctx.clock_id = clock["id"]
        ctx.clock_time = ctx.clock_started_ts = int(clock["frozen_time"])
        customer = ctx.gateway.create_customer(
            {"email": f"qa+{ctx.run_id}-{ctx.case_id.replace('_', '-')}@example.com",
             "name": f"QA {ctx.case_id}", "test_clock": ctx.clock_id, "payment_method": card,
             "invoice_settings": {"default_payment_method": card},
             "metadata": {"qa_run": str(ctx.run_id), "qa_case": ctx.case_id}},
            idempotency_key=ctx.key("customer"),
        )
        ctx.customer_id = customer["id"]
        ctx.object_ids.add(customer["id"])


def _set_card(ctx: CaseContext, card: str, intent: str) -> str:
    assert ctx.customer_id
    method = ctx.gateway.attach_payment_method(card, ctx.customer_id, idempotency_key=ctx.key(f"attach:{intent}"))
    ctx.gateway.update_customer(ctx.customer_id, {"invoice_settings": {"default_payment_method": method["id"]}},
                                idempotency_key=ctx.key(f"default-card:{intent}"))
    ctx.ids[f"payment_method_{intent}"] = method["id"]
    return str(method["id"])


def _subscribe(ctx: CaseContext, plan: str) -> dict[str, Any]:
    with ctx.step(f"subscribe_{plan}"):
        subscription = ctx.gateway.create_subscription(
            {"customer": ctx.customer_id, "items": [{"price": _price(ctx, plan)}],
             "metadata": {"qa_run": str(ctx.run_id), "qa_case": ctx.case_id}},
            idempotency_key=ctx.key(f"subscribe:{plan}"),
        )
    ctx.ids["subscription"] = subscription["id"]
    ctx.object_ids.add(subscription["id"])
    return dict(subscription)


def _advance(ctx: CaseContext, to: int, intent: str) -> None:
    assert ctx.clock_id
    with ctx.step(f"advance_clock_{intent}"):
        ctx.gateway.advance_test_clock(ctx.clock_id, to, idempotency_key=ctx.key(f"advance:{intent}"))
        deadline = time.monotonic() + CLOCK_WAIT_SECONDS
        while ctx.gateway.retrieve_test_clock(ctx.clock_id).get("status") != "ready":
            if time.monotonic() > deadline:
                raise ExpectationFailed("the test clock finishes advancing within 90 s")
            time.sleep(POLL_SECONDS)
        ctx.clock_time = to


def _period_end(subscription: dict[str, Any]) -> int:
    return int(subscription_period(subscription)[1] or 0)


def _invoices(ctx: CaseContext, subscription_id: str) -> list[dict[str, Any]]:
    invoices = list(ctx.gateway.list_invoices(subscription=subscription_id))
    for invoice in invoices:
        ctx.object_ids.add(invoice["id"])
    return sorted(invoices, key=lambda i: int(i.get("created") or 0))


def _emulator_helper(ctx: CaseContext, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """Checkout and 3-D Secure are steps a person does in a browser; the emulator
    has helpers that do them as a customer would. Against real Stripe there are
    none (None is returned) and the caller takes the API route instead."""
    base = ctx.settings.stripe_api_base
    if not base:
        return None
    try:
        result = emulator_call(base, path, payload, timeout=60)
    except OSError:
        return None
    return result if isinstance(result, dict) else {}


def _invoice_payment_intent(invoice: dict[str, Any]) -> str | None:
    """basil: an invoice's PaymentIntent is under invoice.payments, not invoice.payment_intent."""
    for payment in ((invoice.get("payments") or {}).get("data")) or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent:
            return str(intent.get("id") if isinstance(intent, dict) else intent)
    return None


def _pay(ctx: CaseContext, invoice_id: str, payment_method: str, expectation: str) -> None:
    try:
        ctx.gateway.pay_invoice(invoice_id, {"payment_method": payment_method}, idempotency_key=ctx.key("pay"))
    except StripeGatewayError as error:
        ctx.expect(False, expectation, error.message)


# --- events and the billing DB -----------------------------------------------------------
def _ingest(ctx: CaseContext, event: dict[str, Any]) -> None:
    from services.webhooks import ingest_event

    try:
        ingest_event(ctx.runtime, event, source="sync")
    except IntegrityError:
        # The webhook receiver stored the same delivery at this moment; now it is a duplicate.
        ingest_event(ctx.runtime, event, source="sync")


def _related(ctx: CaseContext, event: dict[str, Any]) -> bool:
    obj = (event.get("data") or {}).get("object") or {}
    if obj.get("id") in ctx.object_ids:
        return True
    customer = obj.get("customer")
    customer_id = customer.get("id") if isinstance(customer, dict) else customer
    return bool(ctx.customer_id) and customer_id == ctx.customer_id


def _event_windows(ctx: CaseContext) -> list[dict[str, int]]:
    """Since the case started in real time, plus the clock's own span when it lies in
    the past (events caused by a clock may carry its time rather than the wall clock)."""
    windows = [{"gte": ctx.started_ts - 5}]
    if ctx.clock_started_ts is not None and ctx.clock_time is not None and ctx.clock_started_ts < ctx.started_ts - 5:
        windows.append({"gte": ctx.clock_started_ts - 5, "lte": min(ctx.clock_time + 5, ctx.started_ts - 6)})
    return windows


def pull_events(ctx: CaseContext, wanted: set[str], *, wait: float | None = None) -> set[str]:
    """Ingest this case's new events until every wanted type was seen (or time is up).
    Returns the wanted types that never arrived."""
    deadline = time.monotonic() + (EVENT_WAIT_SECONDS if wait is None else wait)
    with ctx.step("pull_events_" + "_".join(sorted(wanted)) if wanted else "pull_events"):
        while True:
            fresh = [e for window in _event_windows(ctx) for e in ctx.gateway.list_events(created=window)
                     if e["id"] not in ctx.events and _related(ctx, e)]
            # The Events API lists newest first; reversed then stably sorted keeps Stripe's order
            # for events created in the same second (a renewal and its failure share a clock second).
            for event in sorted(reversed(fresh), key=lambda e: int(e.get("created") or 0)):
                ctx.events[event["id"]] = event["type"]
                obj = (event.get("data") or {}).get("object") or {}
                if obj.get("id"):
                    ctx.object_ids.add(obj["id"])
                _ingest(ctx, event)
            missing = wanted - set(ctx.events.values())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(POLL_SECONDS)


def expect_events(ctx: CaseContext, wanted: set[str]) -> None:
    missing = pull_events(ctx, wanted)
    ctx.expect(not missing, f"Stripe sent {', '.join(sorted(wanted))}",
               f"missing {', '.join(sorted(missing))}" if missing else None)


def _db_subscription(ctx: CaseContext, subscription_id: str) -> dict[str, Any] | None:
    with ctx.runtime.uow() as uow:
        row = uow.session.execute(select(UserSubscription).where(
            UserSubscription.stripe_subscription_id == subscription_id)).scalar_one_or_none()
        if row is None:
            return None
        return {"status": row.status, "is_active": row.is_active, "plan": row.plan, "pending_plan": row.pending_plan,
                "cancel_at_period_end": row.cancel_at_period_end}


def _db_invoice(ctx: CaseContext, invoice_id: str) -> dict[str, Any] | None:
    with ctx.runtime.uow() as uow:
        row = uow.session.get(Invoice, invoice_id)
        if row is None:
            return None
        return {"status": row.status, "paid_at": row.paid_at, "payment_failed_at": row.payment_failed_at,
                "action_required_at": row.action_required_at, "recovered_at": row.recovered_at,
                "recovery_method": row.recovery_method}


def _db_change_kinds(ctx: CaseContext, subscription_id: str) -> list[str]:
    with ctx.runtime.uow() as uow:
        return list(uow.session.execute(select(PlanChange.kind).where(
            PlanChange.stripe_subscription_id == subscription_id).order_by(PlanChange.id)).scalars())


def _settled(read: Callable[[], Any], ok: Callable[[Any], bool]) -> Any:
    """Read until `ok` or DB_SETTLE_SECONDS pass: the webhook receiver may be processing
    the same event in parallel, and its transaction commits a moment later."""
    deadline = time.monotonic() + DB_SETTLE_SECONDS
    value = read()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        value = read()
    return value


def _is_recovered(invoice: dict[str, Any] | None) -> bool:
    return bool(invoice and invoice["recovered_at"] and invoice["recovery_method"])


def _expect_db_subscription(ctx: CaseContext, subscription_id: str, **expected: Any) -> None:
    row = _settled(lambda: _db_subscription(ctx, subscription_id),
                   lambda r: r is not None and all(r[k] == v for k, v in expected.items()))
    ctx.expect(row is not None, f"the billing DB has subscription {subscription_id}")
    assert row is not None
    for column, value in expected.items():
        ctx.expect(row[column] == value, f"billing DB subscription {column} is {value!r}", row[column])


# --- the cases ------------------------------------------------------------------------------
def _case_new_subscription(ctx: CaseContext) -> None:
    _start(ctx)
    pro = _price(ctx, "pro")
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
        completed = _emulator_helper(ctx, f"checkout/sessions/{session['id']}/complete",
                                     {"payment_method": "pm_card_visa"})
    subscription_id = (completed or {}).get("subscription")
    if isinstance(subscription_id, dict):
        subscription_id = subscription_id.get("id")
    if completed is None:
        # Real Stripe: Checkout needs a person in a browser; subscribe directly instead.
        ctx.notes.append("checkout completed by API (hosted Checkout needs a browser on real Stripe)")
        subscription_id = _subscribe(ctx, "pro")["id"]
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
    invoices = _invoices(ctx, str(subscription_id))
    ctx.expect(bool(invoices) and invoices[0].get("status") == "paid", "the first invoice is paid",
               [i.get("status") for i in invoices])
    ctx.ids["invoice"] = invoices[0]["id"]
    _expect_db_subscription(ctx, str(subscription_id), status="active", plan="pro", is_active=True)
    db_invoice = _settled(lambda: _db_invoice(ctx, invoices[0]["id"]), lambda r: bool(r) and r["status"] == "paid")
    ctx.expect(db_invoice is not None and db_invoice["status"] == "paid", "billing DB invoice is paid",
               db_invoice and db_invoice["status"])


def _case_upgrade(ctx: CaseContext) -> None:
    from services.plan_changes import upgrade

    _start(ctx)
    subscription = _subscribe(ctx, "basic")
    pull_events(ctx, {"customer.subscription.created"})
    with ctx.step("upgrade"):
        upgrade(subscription["id"], "pro", "monthly", actor=ctx.system_actor, settings=ctx.settings,
                          uow=ctx.runtime.uow(), gateway=ctx.gateway)
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(item_price_id(after) == _price(ctx, "pro"), "Stripe subscription is on Pro right away",
               item_price_id(after))
    upgrade_invoices = [i for i in _invoices(ctx, subscription["id"])
                        if i.get("billing_reason") == "subscription_update"]
    ctx.expect(bool(upgrade_invoices), "an immediate upgrade invoice was created")
    invoice = upgrade_invoices[-1]
    ctx.ids["upgrade_invoice"] = invoice["id"]
    ctx.expect(invoice.get("status") == "paid" and int(invoice.get("amount_paid") or 0) > 0,
               "the prorated upgrade invoice is paid",
               f"{invoice.get('status')}, paid "
               f"{format_money(int(invoice.get('amount_paid') or 0), str(invoice.get('currency') or 'usd'))}")
    expect_events(ctx, {"customer.subscription.updated", "invoice.paid"})
    _expect_db_subscription(ctx, subscription["id"], plan="pro", status="active")
    kinds = _settled(lambda: _db_change_kinds(ctx, subscription["id"]), lambda k: "upgrade" in k)
    ctx.expect("upgrade" in kinds, "the billing DB records the upgrade in plan history", kinds)


def _case_downgrade_scheduled(ctx: CaseContext) -> None:
    from services.plan_changes import schedule_downgrade

    _start(ctx)
    subscription = _subscribe(ctx, "pro")
    pull_events(ctx, {"customer.subscription.created"})
    with ctx.step("schedule_downgrade"):
        schedule_downgrade(subscription["id"], "basic", "monthly", actor=ctx.system_actor, settings=ctx.settings,
                                     uow=ctx.runtime.uow(), gateway=ctx.gateway)
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("status") == "active", "Stripe subscription stays active", after.get("status"))
    ctx.expect(after.get("cancel_at_period_end") is True, "Stripe cancel_at_period_end is true",
               after.get("cancel_at_period_end"))
    ctx.expect((after.get("metadata") or {}).get("pending_plan") == "basic", "Stripe metadata.pending_plan is basic",
               (after.get("metadata") or {}).get("pending_plan"))
    ctx.expect(item_price_id(after) == _price(ctx, "pro"), "Stripe subscription stays on Pro until period end",
               item_price_id(after))
    expect_events(ctx, {"customer.subscription.updated"})
    _expect_db_subscription(ctx, subscription["id"], plan="pro", pending_plan="basic", cancel_at_period_end=True)


def _case_reconciliation_applies(ctx: CaseContext) -> None:
    from services.plan_changes import schedule_downgrade
    from services.reconciliation import run_reconciliation
    from services.webhook_counts import QA_TRIGGER

    # Reconciliation runs over the whole account at the `now` we give it; a clock far in
    # the past puts this case's renewal where no real subscription's period end can be due.
    _start(ctx, frozen_time=ctx.started_ts - PAST_CLOCK_OFFSET_SECONDS)
    subscription = _subscribe(ctx, "pro")
    schedule_downgrade(subscription["id"], "basic", "monthly", actor=ctx.system_actor, settings=ctx.settings,
                                 uow=ctx.runtime.uow(), gateway=ctx.gateway)
    pull_events(ctx, {"customer.subscription.updated"})
    period_end = _period_end(ctx.gateway.retrieve_subscription(subscription["id"]))
    ctx.expect(period_end > (ctx.clock_started_ts or 0), "the subscription has a period end", period_end)
    # Near renewal: inside the cron's lookahead window, before the period ends.
    near_renewal = period_end - ctx.settings.reconcile_cron_lookahead_seconds // 2
    _advance(ctx, near_renewal, "near-renewal")
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
    ctx.expect(item_price_id(after) == _price(ctx, "basic"), "Stripe subscription switched to Basic",
               item_price_id(after))
    ctx.expect(not after.get("cancel_at_period_end"), "Stripe cancel_at_period_end is unset",
               after.get("cancel_at_period_end"))
    ctx.expect(not (after.get("metadata") or {}).get("pending_plan"), "Stripe metadata.pending_plan is cleared")
    _advance(ctx, period_end + RENEWAL_GRACE_SECONDS, "past-renewal")
    renewed = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(renewed.get("status") == "active", "the subscription renews (not canceled)", renewed.get("status"))
    cycle = [i for i in _invoices(ctx, subscription["id"]) if i.get("billing_reason") == "subscription_cycle"]
    ctx.expect(bool(cycle), "a renewal invoice was created")
    lines = ((cycle[-1].get("lines") or {}).get("data")) or []
    prices = {((line.get("pricing") or {}).get("price_details") or {}).get("price") or
              (line.get("price") or {}).get("id") for line in lines}
    if prices - {None}:
        ctx.expect(_price(ctx, "basic") in prices, "the renewal invoice bills Basic", sorted(p for p in prices if p))
    missing = pull_events(ctx, {"customer.subscription.updated", "invoice.paid"})
    ctx.expect(not missing, "Stripe sent the downgrade update and the renewal payment", missing or None)
    ctx.expect("customer.subscription.deleted" not in ctx.events.values(), "no customer.subscription.deleted event")
    _expect_db_subscription(ctx, subscription["id"], plan="basic", pending_plan=None, cancel_at_period_end=False,
                            status="active")
    kinds = _settled(lambda: _db_change_kinds(ctx, subscription["id"]), lambda k: "downgrade_applied" in k)
    ctx.expect("downgrade_applied" in kinds, "the billing DB records downgrade_applied", kinds)


def _case_sca_required(ctx: CaseContext) -> None:
    _start(ctx, card="pm_card_authenticationRequired")
    with ctx.step("subscribe_with_3ds_card"):
        subscription = ctx.gateway.create_subscription(
            {"customer": ctx.customer_id, "items": [{"price": _price(ctx, "pro")}],
             "payment_behavior": "allow_incomplete", "metadata": {"qa_run": str(ctx.run_id), "qa_case": ctx.case_id}},
            idempotency_key=ctx.key("subscribe:pro"),
        )
    ctx.ids["subscription"] = subscription["id"]
    ctx.object_ids.add(subscription["id"])
    ctx.expect(subscription.get("status") == "incomplete", "Stripe subscription waits for authentication (incomplete)",
               subscription.get("status"))
    invoices = _invoices(ctx, subscription["id"])
    ctx.expect(bool(invoices) and invoices[-1].get("status") == "open", "the first invoice is open, awaiting 3DS",
               [i.get("status") for i in invoices])
    invoice_id = invoices[-1]["id"]
    ctx.ids["invoice"] = invoice_id
    expect_events(ctx, {"invoice.payment_action_required"})
    row = _settled(lambda: _db_invoice(ctx, invoice_id), lambda r: bool(r and r["action_required_at"]))
    ctx.expect(bool(row and row["action_required_at"]), "billing DB invoice records action_required_at")
    with ctx.step("complete_authentication"):
        intent_id = _invoice_payment_intent(ctx.gateway.retrieve_invoice(invoice_id))
        ctx.ids["payment_intent"] = intent_id
        authenticated = _emulator_helper(ctx, f"payment_intents/{intent_id}/authenticate", {}) if intent_id else None
        if authenticated is None:
            # Real Stripe: the 3DS challenge needs a browser; complete with a card that needs none.
            ctx.notes.append("completed by paying with pm_card_visa (3DS challenge needs a browser on real Stripe)")
            method = ctx.gateway.attach_payment_method("pm_card_visa", ctx.customer_id,
                                                       idempotency_key=ctx.key("attach:completion"))
            _pay(ctx, invoice_id, method["id"], "the invoice is paid after completing authentication")
    paid = ctx.gateway.retrieve_invoice(invoice_id)
    ctx.expect(paid.get("status") == "paid", "the invoice is paid after completion", paid.get("status"))
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("status") == "active", "Stripe subscription becomes active", after.get("status"))
    expect_events(ctx, {"invoice.paid"})
    row = _settled(lambda: _db_invoice(ctx, invoice_id), _is_recovered)
    ctx.expect(bool(row and row["recovered_at"]), "billing DB invoice records recovered_at")
    assert row is not None
    ctx.expect(row["recovery_method"] == "customer_action", "billing DB recovery_method is customer_action",
               row["recovery_method"])
    _expect_db_subscription(ctx, subscription["id"], status="active")


def _case_past_due_recovered(ctx: CaseContext) -> None:
    _start(ctx)
    subscription = _subscribe(ctx, "basic")
    period_end = _period_end(subscription) or _period_end(ctx.gateway.retrieve_subscription(subscription["id"]))
    with ctx.step("switch_to_failing_card"):
        _set_card(ctx, "pm_card_chargeCustomerFail", "failing")
    _advance(ctx, period_end + RENEWAL_GRACE_SECONDS, "renewal")
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("status") == "past_due", "Stripe subscription is past_due after the failed renewal",
               after.get("status"))
    cycle = [i for i in _invoices(ctx, subscription["id"]) if i.get("billing_reason") == "subscription_cycle"]
    ctx.expect(bool(cycle) and cycle[-1].get("status") == "open", "the renewal invoice is open (unpaid)",
               [i.get("status") for i in cycle])
    invoice_id = cycle[-1]["id"]
    ctx.ids["invoice"] = invoice_id
    expect_events(ctx, {"invoice.payment_failed"})
    row = _settled(lambda: _db_invoice(ctx, invoice_id), lambda r: bool(r and r["payment_failed_at"]))
    ctx.expect(bool(row and row["payment_failed_at"]), "billing DB invoice records payment_failed_at")
    _expect_db_subscription(ctx, subscription["id"], status="past_due")
    with ctx.step("update_card_and_pay"):
        new_card = _set_card(ctx, "pm_card_visa", "updated")
        _pay(ctx, invoice_id, new_card, "the renewal invoice is paid with the updated card")
    recovered = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(recovered.get("status") == "active", "Stripe subscription is active again", recovered.get("status"))
    expect_events(ctx, {"invoice.paid"})
    row = _settled(lambda: _db_invoice(ctx, invoice_id), _is_recovered)
    ctx.expect(bool(row and row["recovered_at"]), "billing DB invoice records recovered_at")
    assert row is not None
    ctx.expect(row["recovery_method"] == "card_update", "billing DB recovery_method is card_update",
               row["recovery_method"])
    _expect_db_subscription(ctx, subscription["id"], status="active", is_active=True)


def _case_portal_downgrade(ctx: CaseContext) -> None:
    _start(ctx)
    subscription = _subscribe(ctx, "pro")
    pull_events(ctx, {"customer.subscription.created"})
    subscription_item_id = item_id(subscription)
    with ctx.step("portal_downgrade"):
        # What the customer portal sends for a plan switch configured without proration credit.
        ctx.gateway.update_subscription(subscription["id"],
                                        {"items": [{"id": subscription_item_id, "price": _price(ctx, "basic")}],
                                         "proration_behavior": "none"},
                                        idempotency_key=ctx.key("portal-switch"))
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(item_price_id(after) == _price(ctx, "basic"), "Stripe subscription is on Basic", item_price_id(after))
    ctx.expect(after.get("status") == "active", "Stripe subscription stays active", after.get("status"))
    expect_events(ctx, {"customer.subscription.updated"})
    _expect_db_subscription(ctx, subscription["id"], plan="basic", status="active")
    kinds = _settled(lambda: _db_change_kinds(ctx, subscription["id"]), bool)
    ctx.expect(bool(kinds), "the billing DB records the plan change in history", kinds)


def _case_cancel_at_period_end(ctx: CaseContext) -> None:
    from services.plan_changes import cancel_at_period_end

    _start(ctx)
    subscription = _subscribe(ctx, "pro")
    pull_events(ctx, {"customer.subscription.created"})
    with ctx.step("cancel_at_period_end"):
        cancel_at_period_end(subscription["id"], actor=ctx.system_actor, settings=ctx.settings,
                                       uow=ctx.runtime.uow(), gateway=ctx.gateway)
    after = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(after.get("cancel_at_period_end") is True, "Stripe cancel_at_period_end is true",
               after.get("cancel_at_period_end"))
    ctx.expect(not (after.get("metadata") or {}).get("pending_plan"), "no pending_plan (a cancel, not a downgrade)")
    pull_events(ctx, {"customer.subscription.updated"})
    _expect_db_subscription(ctx, subscription["id"], cancel_at_period_end=True, status="active")
    _advance(ctx, _period_end(after) + RENEWAL_GRACE_SECONDS, "past-period-end")
    ended = ctx.gateway.retrieve_subscription(subscription["id"])
    ctx.expect(ended.get("status") == "canceled", "Stripe subscription is canceled at period end", ended.get("status"))
    expect_events(ctx, {"customer.subscription.deleted"})
    _expect_db_subscription(ctx, subscription["id"], status="canceled", is_active=False)


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


def _cleanup(ctx: CaseContext) -> None:
    """Deleting the clock removes its customer and subscriptions from Stripe test mode."""
    if not ctx.clock_id:
        return
    try:
        ctx.gateway.delete_test_clock(ctx.clock_id)
    except StripeGatewayError as error:
        ctx.notes.append(f"test clock not deleted: {error.message}")


def run_case(runtime: Runtime, case_id: str, *, run_id: int, actor: str) -> CaseOutcome:
    """Run one case by itself; never raises for a failed expectation or a Stripe error."""
    ctx = CaseContext(runtime=runtime, run_id=run_id, case_id=case_id, actor=actor)
    started = time.monotonic()
    status, failed = "passed", None
    try:
        # Everything the case records is test activity, kept out of production figures.
        with metric_points.test_activity():
            CASE_RUNNERS[case_id](ctx)
    except ExpectationFailed as failure:
        status, failed = "failed", failure.expectation
    except StripeGatewayError as error:
        status, failed = "error", f"Stripe refused a step: {error.message}"
    except Exception as error:  # a console service raised: that is a failed case, with its words
        message = getattr(error, "message", None) or str(error) or error.__class__.__name__
        status, failed = "error", f"{error.__class__.__name__}: {message}"
    finally:
        _cleanup(ctx)
    return CaseOutcome(case_id, status, failed, ctx.evidence(), int((time.monotonic() - started) * 1000))


# --- runs, results, audit -----------------------------------------------------------------
def _refuse_live(settings: Settings) -> None:
    from services.config import stripe_key_mode

    key = settings.stripe_secret
    if settings.stripe_mode == "live" or (key and stripe_key_mode(key) == "live"):
        raise QaRefused("The QA matrix runs only in Stripe test mode: it creates customers and charges test cards.")


@dataclass
class QaRunSummary:
    run_id: int
    code_version: str
    outcomes: list[CaseOutcome]

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.status == "passed" for o in self.outcomes)


def run_matrix(
    runtime: Runtime, *, case_ids: list[str] | None, actor: str, progress: ProgressCallback | None = None
) -> QaRunSummary:
    """Run the chosen cases (all by default), storing each result as it finishes."""
    chosen = list(case_ids or CASE_IDS)
    unknown = [c for c in chosen if c not in CASES_BY_ID]
    if unknown:
        raise QaRefused(f"Unknown QA case(s): {', '.join(unknown)}. Known: {', '.join(CASE_IDS)}.")
    try:
        _refuse_live(runtime.settings)
    except QaRefused as refusal:
        with runtime.uow() as uow:
            record(uow, actor=actor, action="qa.run", result="refused", target="qa_matrix", error=refusal.message)
            uow.commit()
        raise
    version = code_version()
    with runtime.uow() as uow:
        run = QaRun(actor=actor, mode=runtime.settings.stripe_mode, code_version=version, status="running")
        uow.session.add(run)
        uow.commit()
        run_id = run.id
    outcomes: list[CaseOutcome] = []
    for position, case_id in enumerate(chosen):
        if progress:
            progress(position, len(chosen), case_id, "running")
        outcome = run_case(runtime, case_id, run_id=run_id, actor=actor)
        outcomes.append(outcome)
        with runtime.uow() as uow:
            uow.session.add(QaResult(run_id=run_id, case_id=case_id, status=outcome.status, manual=False,
                                     failed_expectation=outcome.failed_expectation,
                                     evidence=json.loads(json.dumps(outcome.evidence, default=str)), actor=actor,
                                     code_version=version, duration_ms=outcome.duration_ms))
            uow.commit()
        if progress:
            progress(position + 1, len(chosen), case_id, outcome.status)
    summary = QaRunSummary(run_id, version, outcomes)
    with runtime.uow() as uow:
        stored = uow.session.get(QaRun, run_id)
        assert stored is not None
        stored.status = "passed" if summary.passed else "failed"
        stored.finished_at = utcnow()
        record(uow, actor=actor, action="qa.run", result="ok", target=f"qa_run:{run_id}",
               idempotency_key=f"qa:{run_id}",
               details={"code_version": version, "cases": {o.case_id: o.status for o in outcomes}})
        uow.commit()
    return summary


@privileged("qa.run")
def start_qa_run(
    case_ids: list[str] | None, *, actor: str, settings: Settings, uow: UnitOfWork, runtime: Runtime,
    progress: ProgressCallback | None = None,
) -> QaRunSummary:
    """The page's "Run QA matrix" button (admins only)."""
    return run_matrix(runtime, case_ids=case_ids, actor=actor, progress=progress)


def run_matrix_cli(runtime: Runtime, *, case_ids: list[str] | None, actor: str, echo: Callable[[str], None]) -> bool:
    """`billing-ops qa run`: prints one line per case; True when every case passed."""
    def progress(done: int, total: int, case_id: str, status: str) -> None:
        if status == "running":
            echo(f"[{done + 1}/{total}] {case_id} ...")

    try:
        summary = run_matrix(runtime, case_ids=case_ids, actor=actor, progress=progress)
    except QaRefused as refusal:
        echo(f"Refused: {refusal.message}")
        return False
    for outcome in summary.outcomes:
        line = f"{outcome.status.upper():6} {outcome.case_id} ({outcome.duration_ms / 1000:.1f} s)"
        if outcome.failed_expectation:
            line += f": expected {outcome.failed_expectation}"
        echo(line)
    passed = sum(o.status == "passed" for o in summary.outcomes)
    echo(f"QA run {summary.run_id} at code {summary.code_version}: {passed}/{len(summary.outcomes)} passed.")
    return summary.passed


@privileged("qa.manual_result")
def record_manual_result(
    case_id: str, passed: bool, notes: str, *, actor: str, settings: Settings, uow: UnitOfWork
) -> dict[str, Any]:
    """A tester's own result for a case (e.g. run by hand on a real card), with notes."""
    if case_id not in CASES_BY_ID:
        raise QaRefused(f"Unknown QA case: {case_id}.")
    notes = (notes or "").strip()
    if not notes:
        raise QaRefused("Write what you did and saw in the notes: a manual result needs evidence.")
    version = code_version()
    status = "manual_pass" if passed else "manual_fail"
    with uow:
        row = QaResult(run_id=None, case_id=case_id, status=status, manual=True, notes=notes[:4000], actor=actor,
                       code_version=version, evidence={"manual": True},
                       failed_expectation=None if passed else "the tester recorded a failure (see notes)")
        uow.session.add(row)
        uow.session.flush()
        record(uow, actor=actor, action="qa.manual_result", result="ok", target=f"qa_case:{case_id}",
               idempotency_key=f"qa-manual:{row.id}", details={"status": status, "code_version": version})
        uow.commit()
        return result_row(row)


def result_row(row: QaResult) -> dict[str, Any]:
    case = CASES_BY_ID.get(row.case_id)
    return {
        "id": row.id, "run_id": row.run_id, "case_id": row.case_id, "case": case.title if case else row.case_id,
        "status": row.status, "manual": row.manual, "failed_expectation": row.failed_expectation,
        "notes": row.notes, "actor": row.actor, "code_version": row.code_version, "duration_ms": row.duration_ms,
        "at": row.at, "evidence": row.evidence,
    }


def latest_results(uow: UnitOfWork, *, version: str | None = None) -> dict[str, dict[str, Any]]:
    """The latest result per case (for `version` when given)."""
    with uow:
        query = select(QaResult).order_by(QaResult.id.desc())
        if version is not None:
            query = query.where(QaResult.code_version == version)
        latest: dict[str, dict[str, Any]] = {}
        for row in uow.session.execute(query).scalars():
            if row.case_id not in latest:
                latest[row.case_id] = result_row(row)
            if len(latest) == len(CASE_IDS):
                break
        return latest


def matrix_problems(uow: UnitOfWork, *, version: str) -> list[str]:
    """Why the matrix is not green for this code version (empty when every case passed)."""
    latest = latest_results(uow, version=version)
    problems = []
    for case in CASES:
        result = latest.get(case.id)
        if result is None:
            problems.append(f"{case.title}: not run at code version {version}")
        elif result["status"] not in PASSED_STATUSES:
            problems.append(f"{case.title}: {result['status']}"
                            + (f" ({result['failed_expectation']})" if result["failed_expectation"] else ""))
    return problems


def recent_runs(uow: UnitOfWork, *, limit: int = 20) -> list[dict[str, Any]]:
    with uow:
        runs = uow.session.execute(select(QaRun).order_by(QaRun.id.desc()).limit(limit)).scalars()
        return [{"run_id": r.id, "started_at": r.started_at, "finished_at": r.finished_at, "actor": r.actor,
                 "mode": r.mode, "code_version": r.code_version, "status": r.status} for r in runs]
