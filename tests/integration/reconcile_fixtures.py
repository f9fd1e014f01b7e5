"""A small in-memory stand-in for our StripeGateway (not the SDK) for the DB-level
reconciliation tests: it keeps subscriptions, paginates lists by 100, honours
idempotency keys the way Stripe does (same key + same params replays), and
counts real updates separately from replays. The emulator tests cover the wire."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from services.config import Settings, load_settings
from services.stripe_gateway import GatewayStats, StripeGateway, StripeGatewayError

PRICES = {
    "price_basic_monthly": ("basic", "monthly", 1000),
    "price_pro_monthly": ("pro", "monthly", 3000),
    "price_basic_yearly": ("basic", "yearly", 10000),
    "price_pro_yearly": ("pro", "yearly", 30000),
}
ADMIN = "admin@example.com"
NOW = 1_800_000_000


def settings_for(database_url: str, **overrides: str) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": "sk_test_fake",
        "ADMIN_EMAILS": ADMIN,
        "STRIPE_PRICE_BASIC_MONTHLY": "price_basic_monthly",
        "STRIPE_PRICE_PRO_MONTHLY": "price_pro_monthly",
        "STRIPE_PRICE_BASIC_YEARLY": "price_basic_yearly",
        "STRIPE_PRICE_PRO_YEARLY": "price_pro_yearly",
    }
    env.update(overrides)
    return load_settings(env, env_file=None)


def price_object(price_id: str) -> dict[str, Any]:
    _plan, interval, amount = PRICES.get(price_id, ("?", "monthly", 500))
    return {
        "id": price_id, "object": "price", "unit_amount": amount, "currency": "usd",
        "recurring": {"interval": "year" if interval == "yearly" else "month", "interval_count": 1},
    }


def subscription(
    sub_id: str,
    *,
    price: str = "price_pro_monthly",
    period_end: int = NOW + 600,
    cancel_at_period_end: bool = False,
    pending_plan: str | None = None,
    status: str = "active",
    customer: str = "cus_1",
) -> dict[str, Any]:
    metadata = {"pending_plan": pending_plan} if pending_plan else {}
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "metadata": metadata,
        "created": NOW - 86400 * 20,
        "start_date": NOW - 86400 * 20,
        "items": {
            "object": "list",
            "data": [{
                "id": f"si_{sub_id[4:]}",
                "price": price_object(price),
                "current_period_start": period_end - 30 * 86400,
                "current_period_end": period_end,
            }],
        },
    }


class FakeGateway:
    def __init__(self, subscriptions: list[dict[str, Any]] | None = None) -> None:
        self.subscriptions: dict[str, dict[str, Any]] = {s["id"]: s for s in subscriptions or []}
        self.stats = GatewayStats()
        self.updates: list[tuple[str, dict[str, Any], str]] = []  # real changes only
        self.replays = 0
        self.fail_updates: dict[str, StripeGatewayError] = {}
        self.fail_list: StripeGatewayError | None = None
        self.update_delay = 0.0
        self._responses: dict[str, tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def list_subscriptions(self, **params: Any) -> Any:
        ordered = sorted(self.subscriptions)
        for start in range(0, max(len(ordered), 1), 100):
            with self._lock:
                self.stats.list_calls += 1
                self.stats.requests += 1
            if self.fail_list is not None:
                raise self.fail_list
            for sub_id in ordered[start:start + 100]:
                yield copy.deepcopy(self.subscriptions[sub_id])

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        self.stats.requests += 1
        if subscription_id not in self.subscriptions:
            raise StripeGatewayError("Stripe has no such object.", code="resource_missing", http_status=404)
        return copy.deepcopy(self.subscriptions[subscription_id])

    def retrieve_price(self, price_id: str) -> dict[str, Any]:
        return price_object(price_id)

    def preview_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stats.requests += 1
        return preview_invoice_for(self, params)

    def update_subscription(self, subscription_id: str, params: dict[str, Any], *, idempotency_key: str) -> Any:
        if self.update_delay:
            time.sleep(self.update_delay)
        with self._lock:
            self.stats.requests += 1
            fingerprint = json.dumps(params, sort_keys=True)
            if idempotency_key in self._responses:
                seen_params, response = self._responses[idempotency_key]
                if seen_params != fingerprint:
                    raise StripeGatewayError("idempotency mismatch", code="idempotency_error", http_status=400)
                self.replays += 1
                return copy.deepcopy(response)
            if subscription_id in self.fail_updates:
                raise self.fail_updates[subscription_id]
            sub = self.subscriptions[subscription_id]
            item = sub["items"]["data"][0]
            for change in params.get("items", []):
                item["price"] = price_object(change["price"])
            if "cancel_at_period_end" in params:
                sub["cancel_at_period_end"] = bool(params["cancel_at_period_end"])
            for key, value in (params.get("metadata") or {}).items():
                if value == "":
                    sub["metadata"].pop(key, None)
                else:
                    sub["metadata"][key] = value
            self.updates.append((subscription_id, copy.deepcopy(params), idempotency_key))
            response = copy.deepcopy(sub)
            self._responses[idempotency_key] = (fingerprint, response)
            return copy.deepcopy(response)


def as_gateway(fake: FakeGateway) -> StripeGateway:
    """Services take a StripeGateway; the fake answers the calls reconciliation and plan changes make."""
    return cast(StripeGateway, fake)


def preview_invoice_for(gateway: FakeGateway, params: dict[str, Any]) -> dict[str, Any]:
    """A preview shaped like basil's invoices/create_preview: proration lines carry
    parent.subscription_item_details.proration."""
    sub = gateway.subscriptions[params["subscription"]]
    old = sub["items"]["data"][0]["price"]
    new = price_object(params["subscription_details"]["items"][0]["price"])
    prorate = params["subscription_details"].get("proration_behavior") != "none"
    lines = []
    if prorate:
        lines = [
            {"description": "Unused time", "amount": -old["unit_amount"] // 2,
             "parent": {"subscription_item_details": {"proration": True}}},
            {"description": "Remaining time", "amount": new["unit_amount"] // 2,
             "parent": {"subscription_item_details": {"proration": True}}},
        ]
    lines.append({"description": "Next period", "amount": new["unit_amount"],
                  "parent": {"subscription_item_details": {"proration": False}}})
    total = sum(line["amount"] for line in lines)
    return {"object": "invoice", "currency": "usd", "amount_due": max(total, 0), "total": total,
            "lines": {"object": "list", "data": lines}}



@contextmanager
def fake_stripe_runtime(database_url: str, subscriptions: list[dict[str, Any]],
                        customers: list[dict[str, Any]]) -> Iterator[Any]:
    """A runtime for the pages on `database_url` (settings_for), its Stripe a FakeGateway holding
    `subscriptions`; those customers and subscriptions are in the billing DB as synced."""
    from db.session import UnitOfWork
    from services.runtime import Runtime
    from services.stripe_mapping import upsert_customer, upsert_subscription
    from tests.conftest import installed_runtime

    settings = settings_for(database_url)
    gateway = FakeGateway(subscriptions)
    with UnitOfWork(database_url) as uow:
        for customer in customers:
            upsert_customer(uow, customer, observed_at=NOW)
        for sub in gateway.subscriptions.values():
            upsert_subscription(uow, sub, observed_at=1, settings=settings)
        uow.commit()
    with installed_runtime(Runtime(settings), gateway=gateway) as runtime:
        yield runtime
