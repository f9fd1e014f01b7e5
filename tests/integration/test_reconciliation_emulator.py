"""Reconciliation and plan changes on the Stripe emulator with test clocks: the
scheduled downgrade is applied once inside the lookahead and the subscription
renews on the lower price instead of being cancelled."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from db.models import ReconcileAction, UserSubscription
from services import plan_changes, plan_preview, reconcile_run
from services.reconciliation import DRIFT_KINDS, run_reconcile_cron, run_reconciliation
from services.runtime import Runtime
from services.stripe_mapping import upsert_customer, upsert_subscription
from services.stripe_objects import subscription_period
from tests.conftest import ADMIN_EMAIL

# Skips (rather than errors) until the emulator package (issue 4) is in the tree.

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "reconcile.schema.json").read_text())


class World:
    """Prices, a test clock and a customer on the emulator, and a runtime mapped to them."""

    def __init__(self, runtime_factory: Callable[..., Any], database_url: str | None = None, **env: str) -> None:
        db = {"DATABASE_URL": database_url} if database_url else {}
        bootstrap = runtime_factory(**db)
        client = bootstrap.gateway.client
        suffix = str(time.time_ns())
        product = client.v1.products.create({"name": "Console plans"})
        self.prices = {
            name: client.v1.prices.create({
                "product": product.id, "currency": "usd", "unit_amount": amount,
                "recurring": {"interval": "month"},
            }, {"idempotency_key": f"price:{name}:{suffix}"}).id
            for name, amount in (("basic", 1000), ("pro", 3000), ("legacy", 2000))
        }
        self.runtime: Runtime = runtime_factory(
            **db,
            STRIPE_PRICE_BASIC_MONTHLY=self.prices["basic"],
            STRIPE_PRICE_PRO_MONTHLY=self.prices["pro"],
            **env,
        )
        self.gateway = self.runtime.gateway
        self.start = int(time.time())
        self.clock = self.gateway.create_test_clock(self.start, "reconcile", idempotency_key=f"clock:{suffix}")
        self.customer = self.gateway.create_customer(
            {"email": f"c{suffix}@customer.io", "test_clock": self.clock["id"]},
            idempotency_key=f"customer:{suffix}",
        )
        self.payment_method = self.gateway.attach_payment_method(
            "pm_card_visa", self.customer["id"], idempotency_key=f"pm:{suffix}"
        )
        self.gateway.update_customer(
            self.customer["id"], {"invoice_settings": {"default_payment_method": self.payment_method["id"]}},
            idempotency_key=f"customer-pm:{suffix}",
        )

    def subscribe(self, price: str = "pro", *, metadata: dict[str, str] | None = None, store: bool = True) -> str:
        sub = self.gateway.create_subscription(
            {"customer": self.customer["id"], "items": [{"price": self.prices[price]}],
             "default_payment_method": self.payment_method["id"], "metadata": metadata or {}},
            idempotency_key=f"sub:{time.time_ns()}",
        )
        if store:
            with self.runtime.uow() as uow:
                upsert_subscription(uow, sub, observed_at=int(time.time()), settings=self.runtime.settings)
                uow.commit()
        return str(sub["id"])

    def period_end(self, subscription_id: str) -> int:
        end = subscription_period(self.gateway.retrieve_subscription(subscription_id))[1]
        assert end is not None
        return int(end)

    def advance(self, to: int) -> None:
        self.gateway.advance_test_clock(self.clock["id"], to, idempotency_key=f"advance:{self.clock['id']}:{to}")
        for _ in range(200):
            if self.gateway.retrieve_test_clock(self.clock["id"]).get("status") == "ready":
                return
            time.sleep(0.05)
        raise AssertionError("the test clock did not finish advancing")

    def schedule_downgrade(self, subscription_id: str) -> None:
        plan_changes.schedule_downgrade(subscription_id, "basic", "monthly", actor=ADMIN_EMAIL,
                                        settings=self.runtime.settings, uow=self.runtime.uow(), gateway=self.gateway)

    def lose_customer(self, name: str) -> tuple[str, int]:
        """A customer named `name` on pro with a downgrade scheduled, and nobody reconciling in
        time: the clock passes the period end, so Stripe cancels. Returns (subscription, period end)."""
        self.customer = self.gateway.update_customer(self.customer["id"], {"name": name},
                                                     idempotency_key=f"name:{self.customer['id']}")
        with self.runtime.uow() as uow:
            upsert_customer(uow, self.customer, observed_at=self.start + 1)
            uow.commit()
        subscription_id = self.subscribe("pro")
        self.schedule_downgrade(subscription_id)
        end = self.period_end(subscription_id)
        self.advance(end + 3600)
        return subscription_id, end

    def reconcile(self, *, now: int, apply: bool = True, runtime: Runtime | None = None) -> Any:
        rt = runtime or self.runtime
        return run_reconciliation(settings=rt.settings, uow=rt.uow(), gateway=rt.gateway, apply=apply,
                                  actor="cli", trigger="manual", now=now)

    def subscription_updates(self, emulator: Any, subscription_id: str) -> list[dict[str, Any]]:
        """POSTs to this subscription (the emulator's log does not mark idempotent replays)."""
        return [
            r for r in emulator.requests()
            if str(r.get("method", "")).upper() == "POST"
            and str(r.get("path", "")).rstrip("/").endswith(f"/v1/subscriptions/{subscription_id}")
        ]


def test_downgrade_inside_the_lookahead_is_applied_once_and_renews_lower(
    emulator: Any, runtime_factory: Callable[..., Any], database_url: str
) -> None:
    world = World(runtime_factory, database_url)
    due = world.subscribe("pro")
    world.schedule_downgrade(due)
    end = world.period_end(due)

    # An hour before the end is outside the 900 s lookahead: nothing is touched.
    world.advance(end - 3600)
    early = world.reconcile(now=end - 3600)
    assert early.applied == 0 and not [a for a in early.actions if a.kind == "apply_downgrade"]
    untouched = world.gateway.retrieve_subscription(due)
    assert untouched["metadata"].get("pending_plan") == "basic" and untouched["cancel_at_period_end"] is True

    world.advance(end - 600)
    report = world.reconcile(now=end - 600)
    assert report.applied == 1 and report.errors == 0
    stripe_sub = world.gateway.retrieve_subscription(due)
    item = stripe_sub["items"]["data"][0]
    assert item["price"]["id"] == world.prices["basic"]
    assert stripe_sub["cancel_at_period_end"] is False
    assert not (stripe_sub.get("metadata") or {}).get("pending_plan")
    with world.runtime.uow() as uow:
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id=due)).scalar_one()
        assert (row.plan, row.pending_plan, row.cancel_at_period_end) == ("basic", None, False)
        action = uow.session.execute(
            select(ReconcileAction).filter_by(stripe_subscription_id=due, kind="apply_downgrade")).scalar_one()
        assert (action.result, action.idempotency_key) == ("applied", f"downgrade:{due}:{end}")

    assert world.reconcile(now=end - 300).applied == 0  # nothing left to do: applied once

    world.advance(end + 3600)
    renewed = world.gateway.retrieve_subscription(due)
    assert renewed["status"] == "active"  # renewed, not cancelled
    assert renewed["items"]["data"][0]["price"]["id"] == world.prices["basic"]
    assert world.period_end(due) > end


def test_two_workers_started_together_apply_it_once(emulator: Any, runtime_factory: Callable[..., Any]) -> None:
    world = World(runtime_factory, RECONCILE_CRON_ENABLED="true")
    due = world.subscribe("pro")
    world.schedule_downgrade(due)
    end = world.period_end(due)
    world.advance(end - 600)
    emulator.clear_requests()
    workers = [Runtime(world.runtime.settings) for _ in range(2)]
    reports: list[Any] = []
    barrier = threading.Barrier(2)

    def tick(index: int) -> None:
        barrier.wait()
        reports.append(run_reconcile_cron(workers[index], holder=f"worker-{index}", now=end - 600))

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r is None for r in reports) == [False, True]
    assert len(world.subscription_updates(emulator, due)) == 1
    with world.runtime.uow() as uow:
        actions = uow.session.execute(
            select(ReconcileAction).filter_by(stripe_subscription_id=due, kind="apply_downgrade")).scalars().all()
    assert [a.result for a in actions] == ["applied"]


def test_overlapping_manual_runs_send_one_update(emulator: Any, runtime_factory: Callable[..., Any]) -> None:
    world = World(runtime_factory)
    due = world.subscribe("pro")
    world.schedule_downgrade(due)
    end = world.period_end(due)
    emulator.clear_requests()
    runtimes = [Runtime(world.runtime.settings) for _ in range(2)]
    reports: list[Any] = []
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        barrier.wait()
        reports.append(world.reconcile(now=end - 600, runtime=runtimes[index]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.applied for r in reports) == 1
    assert len(world.subscription_updates(emulator, due)) == 1


def test_crash_after_the_stripe_call_is_completed_without_a_second_change(
    emulator: Any, runtime_factory: Callable[..., Any], monkeypatch: Any
) -> None:
    world = World(runtime_factory)
    due = world.subscribe("pro")
    world.schedule_downgrade(due)
    end = world.period_end(due)
    real_finish = reconcile_run._finish_downgrade

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed between the Stripe call and the DB write")

    monkeypatch.setattr(reconcile_run, "_finish_downgrade", crash)
    emulator.clear_requests()
    with pytest.raises(RuntimeError):
        world.reconcile(now=end - 600)
    monkeypatch.setattr(reconcile_run, "_finish_downgrade", real_finish)
    events_before = len(list(world.gateway.list_events(type="customer.subscription.updated")))

    report = world.reconcile(now=end - 600)

    assert report.applied == 1
    # Two POSTs with the same key: the second was replayed by Stripe, so the
    # subscription changed once (no new customer.subscription.updated event).
    posts = world.subscription_updates(emulator, due)
    assert [p["idempotency_key"] for p in posts] == [f"downgrade:{due}:{end}"] * 2
    assert events_before >= 1
    assert len(list(world.gateway.list_events(type="customer.subscription.updated"))) == events_before
    with world.runtime.uow() as uow:
        actions = uow.session.execute(
            select(ReconcileAction).filter_by(stripe_subscription_id=due, kind="apply_downgrade")).scalars().all()
        assert [a.result for a in actions] == ["applied"]
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id=due)).scalar_one()
        assert row.plan == "basic"


def test_more_than_250_subscriptions_are_all_examined(emulator: Any, runtime_factory: Callable[..., Any]) -> None:
    world = World(runtime_factory)
    ids = [world.subscribe("pro", store=False) for _ in range(255)]
    report = world.reconcile(now=world.start, apply=False)
    assert report.examined == 255 and report.list_calls == 3
    missing = {a.subscription_id for a in report.actions if a.kind == "drift_missing_in_db"}
    assert missing == set(ids)


def test_each_kind_of_drift_is_found_and_nothing_changes(emulator: Any, runtime_factory: Callable[..., Any]) -> None:
    world = World(runtime_factory)
    no_cancel = world.subscribe("pro", metadata={"pending_plan": "basic"})
    past = world.subscribe("pro")
    world.schedule_downgrade(past)
    mismatch = world.subscribe("pro")
    with world.runtime.uow() as uow:
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id=mismatch)).scalar_one()
        row.plan = "basic"
        uow.commit()
    unknown = world.subscribe("legacy")
    missing = world.subscribe("pro", store=False)
    emulator.clear_requests()

    report = world.reconcile(now=world.period_end(past) + 10)

    found = {(a.subscription_id, a.kind) for a in report.actions if a.kind in DRIFT_KINDS}
    assert found == {
        (no_cancel, "drift_pending_without_cancel"),
        (past, "drift_pending_past_period_end"),
        (mismatch, "drift_plan_mismatch"),
        (unknown, "drift_unknown_price"),
        (missing, "drift_missing_in_db"),
    }
    assert report.applied == 0
    assert not [r for r in emulator.requests() if str(r.get("method", "")).upper() == "POST"]


def test_stripe_error_on_one_subscription_is_recorded_and_the_run_continues(
    emulator: Any, runtime_factory: Callable[..., Any]
) -> None:
    # basic yearly maps to a price Stripe does not have: its update is refused.
    world = World(runtime_factory, STRIPE_PRICE_BASIC_YEARLY="price_doesnotexist")
    broken = world.subscribe("pro")
    fine = world.subscribe("pro")
    world.schedule_downgrade(fine)
    world.gateway.update_subscription(
        broken, {"cancel_at_period_end": True, "metadata": {"pending_plan": "basic", "pending_interval": "yearly"}},
        idempotency_key=f"manual:{broken}",
    )
    end = world.period_end(fine)
    report = world.reconcile(now=end - 600)
    by_sub = {a.subscription_id: a for a in report.actions if a.kind == "apply_downgrade"}
    assert by_sub[broken].result == "error" and by_sub[broken].error
    assert by_sub[fine].result == "applied"
    assert report.errors == 1 and report.applied == 1 and report.error is None


def test_cli_json_output_validates_against_the_schema(
    emulator: Any, runtime_factory: Callable[..., Any], monkeypatch: Any
) -> None:
    from cli import main

    world = World(runtime_factory)
    world.subscribe("pro", store=False)
    settings = world.runtime.settings
    env = {
        "DATABASE_URL": settings.database_url, "STRIPE_API_KEY": settings.stripe_secret or "",
        "STRIPE_API_BASE": settings.stripe_api_base or "", "STRIPE_MODE": "test",
        "STRIPE_PRICE_BASIC_MONTHLY": world.prices["basic"], "STRIPE_PRICE_PRO_MONTHLY": world.prices["pro"],
        "STRIPE_RATE_LIMIT_PER_SECOND": "1000",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(Path(settings.database_url.removeprefix("sqlite:///")).parent)
    result = CliRunner().invoke(main, ["reconcile", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    jsonschema.validate(document, SCHEMA)
    assert document["mode"] == "dry-run" and document["counts"]["examined"] == 1
    table = CliRunner().invoke(main, ["reconcile"])
    assert table.exit_code == 0 and "examined 1" in table.output and "drift_missing_in_db" in table.output


def test_preview_then_upgrade_invoices_the_proration_now(emulator: Any, runtime_factory: Callable[..., Any]) -> None:
    world = World(runtime_factory)
    sub_id = world.subscribe("basic")
    world.advance(world.start + 15 * 86400)  # half-way through the period
    kw = {"settings": world.runtime.settings, "uow": world.runtime.uow(), "gateway": world.gateway}
    preview = plan_preview.preview_change(sub_id, "pro", "monthly", **kw)
    assert preview.direction == "upgrade" and preview.current_plan == "basic"
    assert 0 < preview.proration_amount < 3000 - 1000 + 1  # about half of the 20.00 difference
    result = plan_changes.upgrade(sub_id, "pro", "monthly", actor=ADMIN_EMAIL, **kw)
    assert result.to_plan == "pro"
    stripe_sub = world.gateway.retrieve_subscription(sub_id)
    assert stripe_sub["items"]["data"][0]["price"]["id"] == world.prices["pro"]
    invoices = list(world.gateway.list_invoices(subscription=sub_id))
    assert len(invoices) == 2  # the first period's, and the upgrade's proration invoice
    with world.runtime.uow() as uow:
        row = uow.session.execute(select(UserSubscription).filter_by(stripe_subscription_id=sub_id)).scalar_one()
        assert row.plan == "pro"
