"""The QA matrix's case runner: the context a case runs in (its test clock, customer,
idempotency keys, timings and expectations), the Stripe, event and billing-DB steps the
cases are written in, and `run_case`, which runs one case and never raises for a failed
expectation or a Stripe error. The cases are services/qa_cases.py; runs and results
services/qa_runs.py and services/qa_results.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from db.repositories import customers as customer_rows
from db.repositories import plan_changes as plan_rows
from services import metric_points
from services.audit import SystemCaller
from services.config import Settings
from services.emulator_client import emulator_call
from services.runtime import Runtime
from services.stripe_gateway import StripeGatewayError
from services.stripe_objects import subscription_period

# How long to wait for Stripe to emit a case's events / finish advancing a clock.
EVENT_WAIT_SECONDS = 30.0
CLOCK_WAIT_SECONDS = 90.0
POLL_SECONDS = 0.25
DB_SETTLE_SECONDS = 5.0


class ExpectationFailed(Exception):
    def __init__(self, expectation: str) -> None:
        super().__init__(expectation)
        self.expectation = expectation


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
    # Browser-only steps (3-D Secure, hosted Checkout) a person does by hand on real Stripe.
    manual_steps: list[dict[str, str]] = field(default_factory=list)

    @property
    def gateway(self) -> Any:
        return self.runtime.gateway

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def on_emulator(self) -> bool:
        """The case's target: the emulator when STRIPE_API_BASE is set, else Stripe test mode."""
        return on_emulator(self.settings)

    @property
    def system_actor(self) -> SystemCaller:
        """The run was authorised as a whole (`run_matrix` is privileged); its cases act under it."""
        return SystemCaller(self.actor)

    def as_system(self) -> dict[str, Any]:
        """The keywords a privileged console service takes, acting as this run."""
        return {"actor": self.system_actor, "settings": self.settings, "uow": self.runtime.uow(),
                "gateway": self.gateway}

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
            "manual_steps": self.manual_steps,
        }


def on_emulator(settings: Settings) -> bool:
    """STRIPE_API_BASE set means the emulator; unset, the console talks to Stripe itself."""
    return bool(settings.stripe_api_base)


# --- Stripe helpers --------------------------------------------------------------------
def plan_price(ctx: CaseContext, plan: str) -> str:
    price_id = ctx.settings.price_id(plan, "monthly")
    if not price_id:
        raise ExpectationFailed(f"{plan}.monthly is mapped to a price (set the price mapping)")
    return price_id


def start_case(ctx: CaseContext, card: str = "pm_card_visa", *, frozen_time: int | None = None) -> None:
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


def set_card(ctx: CaseContext, card: str, intent: str) -> str:
    assert ctx.customer_id
    method = ctx.gateway.attach_payment_method(card, ctx.customer_id, idempotency_key=ctx.key(f"attach:{intent}"))
    ctx.gateway.update_customer(ctx.customer_id, {"invoice_settings": {"default_payment_method": method["id"]}},
                                idempotency_key=ctx.key(f"default-card:{intent}"))
    ctx.ids[f"payment_method_{intent}"] = method["id"]
    return str(method["id"])


def subscribe(ctx: CaseContext, plan: str) -> dict[str, Any]:
    with ctx.step(f"subscribe_{plan}"):
        subscription = ctx.gateway.create_subscription(
            {"customer": ctx.customer_id, "items": [{"price": plan_price(ctx, plan)}],
             "metadata": {"qa_run": str(ctx.run_id), "qa_case": ctx.case_id}},
            idempotency_key=ctx.key(f"subscribe:{plan}"),
        )
    ctx.ids["subscription"] = subscription["id"]
    ctx.object_ids.add(subscription["id"])
    return dict(subscription)


def subscribed(ctx: CaseContext, plan: str) -> dict[str, Any]:
    """A fresh customer subscribed to `plan` monthly, its creation event ingested."""
    start_case(ctx)
    subscription = subscribe(ctx, plan)
    pull_events(ctx, {"customer.subscription.created"})
    return subscription


def advance_clock(ctx: CaseContext, to: int, intent: str) -> None:
    assert ctx.clock_id
    with ctx.step(f"advance_clock_{intent}"):
        ctx.gateway.advance_test_clock(ctx.clock_id, to, idempotency_key=ctx.key(f"advance:{intent}"))
        deadline = time.monotonic() + CLOCK_WAIT_SECONDS
        while ctx.gateway.retrieve_test_clock(ctx.clock_id).get("status") != "ready":
            if time.monotonic() > deadline:
                raise ExpectationFailed("the test clock finishes advancing within 90 s")
            time.sleep(POLL_SECONDS)
        ctx.clock_time = to


def period_end_of(subscription: dict[str, Any]) -> int:
    return int(subscription_period(subscription)[1] or 0)


def invoices_of(ctx: CaseContext, subscription_id: str) -> list[dict[str, Any]]:
    invoices = list(ctx.gateway.list_invoices(subscription=subscription_id))
    for invoice in invoices:
        ctx.object_ids.add(invoice["id"])
    return sorted(invoices, key=lambda i: int(i.get("created") or 0))


def emulator_helper(ctx: CaseContext, path: str, payload: dict[str, Any], *, step: str = "",
                    manual: str = "") -> dict[str, Any] | None:
    """Checkout and 3-D Secure are steps a person does in a browser; the emulator
    has helpers (under /_emulator/) that do them as a customer would. Against real
    Stripe there are none: the step is marked manual in the evidence (`step`, and
    `manual`, what a person does in the browser), None is returned and the caller
    takes the API route instead."""
    base = ctx.settings.stripe_api_base
    if not ctx.on_emulator or not base:
        if manual:
            ctx.manual_steps.append({"step": step or path, "manual": manual})
        return None
    try:
        result = emulator_call(base, path, payload, timeout=60)
    except OSError:
        return None
    return result if isinstance(result, dict) else {}


def pay_with(ctx: CaseContext, invoice_id: str, payment_method: str, expectation: str) -> None:
    try:
        ctx.gateway.pay_invoice(invoice_id, {"payment_method": payment_method}, idempotency_key=ctx.key("pay"))
    except StripeGatewayError as error:
        ctx.expect(False, expectation, error.message)


# --- events and the billing DB -----------------------------------------------------------
def ingest(ctx: CaseContext, event: dict[str, Any]) -> None:
    from services.webhooks import ingest_event

    try:
        ingest_event(ctx.runtime, event, source="sync")
    except IntegrityError:
        # The webhook receiver stored the same delivery at this moment; now it is a duplicate.
        ingest_event(ctx.runtime, event, source="sync")


def is_related(ctx: CaseContext, event: dict[str, Any]) -> bool:
    obj = (event.get("data") or {}).get("object") or {}
    if obj.get("id") in ctx.object_ids:
        return True
    customer = obj.get("customer")
    customer_id = customer.get("id") if isinstance(customer, dict) else customer
    return bool(ctx.customer_id) and customer_id == ctx.customer_id


def event_windows(ctx: CaseContext) -> list[dict[str, int]]:
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
            fresh = [e for window in event_windows(ctx) for e in ctx.gateway.list_events(created=window)
                     if e["id"] not in ctx.events and is_related(ctx, e)]
            # The Events API lists newest first; reversed then stably sorted keeps Stripe's order
            # for events created in the same second (a renewal and its failure share a clock second).
            for event in sorted(reversed(fresh), key=lambda e: int(e.get("created") or 0)):
                ctx.events[event["id"]] = event["type"]
                obj = (event.get("data") or {}).get("object") or {}
                if obj.get("id"):
                    ctx.object_ids.add(obj["id"])
                ingest(ctx, event)
            missing = wanted - set(ctx.events.values())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(POLL_SECONDS)


def expect_events(ctx: CaseContext, wanted: set[str]) -> None:
    missing = pull_events(ctx, wanted)
    ctx.expect(not missing, f"Stripe sent {', '.join(sorted(wanted))}",
               f"missing {', '.join(sorted(missing))}" if missing else None)


def db_subscription_row(ctx: CaseContext, subscription_id: str) -> dict[str, Any] | None:
    with ctx.runtime.uow() as uow:
        row = customer_rows.subscription(uow, subscription_id)
        if row is None:
            return None
        return {"status": row.status, "is_active": row.is_active, "plan": row.plan, "pending_plan": row.pending_plan,
                "cancel_at_period_end": row.cancel_at_period_end}


def db_invoice_row(ctx: CaseContext, invoice_id: str) -> dict[str, Any] | None:
    with ctx.runtime.uow() as uow:
        row = customer_rows.invoice(uow, invoice_id)
        if row is None:
            return None
        return {"status": row.status, "paid_at": row.paid_at, "payment_failed_at": row.payment_failed_at,
                "action_required_at": row.action_required_at, "recovered_at": row.recovered_at,
                "recovery_method": row.recovery_method}


def db_change_kinds(ctx: CaseContext, subscription_id: str) -> list[str]:
    with ctx.runtime.uow() as uow:
        return plan_rows.kinds(uow, subscription_id)


def settled(read: Callable[[], Any], ok: Callable[[Any], bool]) -> Any:
    """Read until `ok` or DB_SETTLE_SECONDS pass: the webhook receiver may be processing
    the same event in parallel, and its transaction commits a moment later."""
    deadline = time.monotonic() + DB_SETTLE_SECONDS
    value = read()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        value = read()
    return value


def is_recovered(invoice: dict[str, Any] | None) -> bool:
    return bool(invoice and invoice["recovered_at"] and invoice["recovery_method"])


def expect_open_invoice(ctx: CaseContext, invoices: list[dict[str, Any]], expectation: str) -> str:
    """The newest of `invoices` is open (unpaid); its id, kept in the evidence."""
    ctx.expect(bool(invoices) and invoices[-1].get("status") == "open", expectation,
               [i.get("status") for i in invoices])
    invoice_id = str(invoices[-1]["id"])
    ctx.ids["invoice"] = invoice_id
    return invoice_id


def expect_invoice_recorded(ctx: CaseContext, invoice_id: str, column: str) -> None:
    """The billing DB's invoice row has `column` (e.g. payment_failed_at) set, once it settles."""
    row = settled(lambda: db_invoice_row(ctx, invoice_id), lambda r: bool(r and r[column]))
    ctx.expect(bool(row and row[column]), f"billing DB invoice records {column}")


def expect_recovered(ctx: CaseContext, invoice_id: str, method: str) -> None:
    """The billing DB records the invoice as recovered, and how (customer_action, card_update, retry)."""
    row = settled(lambda: db_invoice_row(ctx, invoice_id), is_recovered)
    ctx.expect(bool(row and row["recovered_at"]), "billing DB invoice records recovered_at")
    assert row is not None
    ctx.expect(row["recovery_method"] == method, f"billing DB recovery_method is {method}", row["recovery_method"])


def expect_db_subscription(ctx: CaseContext, subscription_id: str, **expected: Any) -> None:
    row = settled(lambda: db_subscription_row(ctx, subscription_id),
                   lambda r: r is not None and all(r[k] == v for k, v in expected.items()))
    ctx.expect(row is not None, f"the billing DB has subscription {subscription_id}")
    assert row is not None
    for column, value in expected.items():
        ctx.expect(row[column] == value, f"billing DB subscription {column} is {value!r}", row[column])


CaseRunner = Callable[[CaseContext], None]


def _cleanup(ctx: CaseContext) -> None:
    """Deleting the clock removes its customer and subscriptions from Stripe test mode."""
    if not ctx.clock_id:
        return
    try:
        ctx.gateway.delete_test_clock(ctx.clock_id)
    except StripeGatewayError as error:
        ctx.notes.append(f"test clock not deleted: {error.message}")


def run_case(runtime: Runtime, case_id: str, runner: CaseRunner, *, run_id: int, actor: str) -> CaseOutcome:
    """Run one case by itself; never raises for a failed expectation or a Stripe error."""
    ctx = CaseContext(runtime=runtime, run_id=run_id, case_id=case_id, actor=actor)
    started = time.monotonic()
    status, failed = "passed", None
    try:
        # Everything the case records is test activity, kept out of production figures.
        with metric_points.test_activity():
            runner(ctx)
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
