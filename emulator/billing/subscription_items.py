"""Subscription items: /v1/subscription_items create, retrieve, update, delete, list.

Behaviour follows Stripe's API reference: listing needs `subscription`; an item joins the
subscription's current period; a price already on the subscription can't be added twice, and
every item shares the subscription's currency; the last item can't be deleted (the subscription
is canceled instead). `proration_behavior` (default `create_prorations`) prorates by seconds over
the item's current period: adding credits nothing and charges the remaining time, deleting credits
the unused time, a price or quantity change does both; `create_prorations` leaves the lines
pending for the next invoice, `always_invoice` invoices and collects them at once, `none` makes
none. Each change emits `customer.subscription.updated` with the items as previous_attributes.
"""

from __future__ import annotations

import copy

from emulator.engine import Engine
from emulator.state import Json
from emulator.wire.protocol import StripeApiError, check_params, list_object, missing, one_of, to_int
from emulator.wire.routes import LIST_PARAMS, render, route

KIND = "subscription_item"
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
WRITE_PARAMS = {"metadata", "price", "quantity", "proration_behavior", "proration_date", "payment_behavior",
                "tax_rates", "discounts", "billing_thresholds", "price_data", "off_session"}


def _find(engine: Engine, item_id: str) -> tuple[Json, Json]:
    for subscription in engine.all("subscription"):
        for item in subscription["items"]["data"]:
            if item["id"] == item_id:
                return subscription, item
    raise missing("subscription_item", item_id)


def _behavior(params: Json) -> str:
    behavior = str(params.get("proration_behavior") or "create_prorations")
    one_of(behavior, PRORATION_BEHAVIORS, "proration_behavior")
    return behavior


def _editable(subscription: Json) -> None:
    if subscription["status"] in ("canceled", "incomplete_expired"):
        raise StripeApiError(400, "A canceled subscription can only update its cancellation_details and metadata.")


def _fraction(item: Json, at: int) -> float:
    start, end = int(item["current_period_start"]), int(item["current_period_end"])
    return max(0.0, min(1.0, (end - at) / max(1, end - start)))


def _proration(engine: Engine, subscription: Json, item: Json, price: Json, quantity: int, at: int, *,
               credit: bool) -> Json:
    amount = round(int(price["unit_amount"]) * quantity * _fraction(item, at))
    name = engine._product_name(price)
    line = engine._line(subscription, item, price, -amount if credit else amount, at,
                        int(item["current_period_end"]), proration=True,
                        description=f"{'Unused' if credit else 'Remaining'} time on {quantity} × {name}")
    line["quantity"] = quantity
    return line


def _settle(engine: Engine, subscription: Json, lines: list[Json], behavior: str, now: int, before: Json) -> None:
    engine.emit_update("customer.subscription.updated", subscription, before, created=now)
    lines = [line for line in lines if line["amount"] != 0]
    if not lines or behavior == "none":
        return
    if behavior == "always_invoice":
        invoice = engine._invoice_for(subscription, "subscription_update", lines, now)
        engine._collect(invoice, subscription, now)
    else:
        engine.pending_prorations.setdefault(subscription["id"], []).extend(lines)


def _at(engine: Engine, subscription: Json, params: Json) -> int:
    now = engine.now_for(subscription["customer"])
    return to_int(params["proration_date"], "proration_date") if params.get("proration_date") else now


@route("POST", "/v1/subscription_items")
def subscription_items_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, WRITE_PARAMS | {"subscription"}, ("subscription",))
    subscription = engine.get("subscription", str(params["subscription"]), "subscription", "subscription")
    _editable(subscription)
    if not params.get("price"):
        raise StripeApiError(400, "Missing required param: price.", code="parameter_missing", param="price")
    price = engine._price(str(params["price"]), "price")
    items = subscription["items"]["data"]
    if any(i["price"]["id"] == price["id"] for i in items):
        raise StripeApiError(400, f"Cannot add multiple subscription items with the same price: {price['id']}",
                             param="price")
    if price["currency"] != subscription["currency"]:
        raise StripeApiError(400, "Currency of all prices on a subscription must match the subscription's currency "
                                  f"({subscription['currency']}).", param="price")
    behavior = _behavior(params)
    quantity = to_int(params.get("quantity", 1), "quantity", minimum=0)
    now = engine.now_for(subscription["customer"])
    at = _at(engine, subscription, params)
    before = engine.snapshot(subscription)
    anchor = items[0] if items else None
    start = int(anchor["current_period_start"]) if anchor else now
    end = int(anchor["current_period_end"]) if anchor else engine.period_end(price, now, now)
    item = engine._new_item(subscription["id"], price, quantity, now, end)
    item["current_period_start"] = start
    item["metadata"] = {k: str(v) for k, v in (params.get("metadata") or {}).items() if v != ""}
    items.append(item)
    lines = [_proration(engine, subscription, item, price, quantity, at, credit=False)] if quantity else []
    _settle(engine, subscription, lines, behavior, now, before)
    return render(engine, item, params)


@route("GET", "/v1/subscription_items/{id}")
def subscription_items_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, _find(engine, m["id"])[1], params)


@route("POST", "/v1/subscription_items/{id}")
def subscription_items_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, WRITE_PARAMS)
    subscription, item = _find(engine, m["id"])
    _editable(subscription)
    behavior = _behavior(params)
    now = engine.now_for(subscription["customer"])
    at = _at(engine, subscription, params)
    before = engine.snapshot(subscription)
    old_price, old_quantity = item["price"], int(item["quantity"])
    new_price = old_price
    if params.get("price") and params["price"] != old_price["id"]:
        new_price = engine._price(str(params["price"]), "price")
        if any(i["price"]["id"] == new_price["id"] for i in subscription["items"]["data"]):
            raise StripeApiError(400, "Cannot add multiple subscription items with the same price: "
                                      f"{new_price['id']}", param="price")
    new_quantity = to_int(params["quantity"], "quantity", minimum=0) if "quantity" in params else old_quantity
    lines: list[Json] = []
    if new_price["id"] != old_price["id"] or new_quantity != old_quantity:
        lines = [_proration(engine, subscription, item, old_price, old_quantity, at, credit=True),
                 _proration(engine, subscription, item, new_price, new_quantity, at, credit=False)]
        item["price"] = copy.deepcopy(new_price)
        item["plan"] = engine.plan_of(new_price)
        item["quantity"] = new_quantity
    if "metadata" in params:
        engine._merge_metadata(item, params["metadata"])
    _settle(engine, subscription, lines, behavior, now, before)
    return render(engine, item, params)


@route("DELETE", "/v1/subscription_items/{id}")
def subscription_items_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"proration_behavior", "proration_date", "clear_usage"})
    subscription, item = _find(engine, m["id"])
    _editable(subscription)
    if len(subscription["items"]["data"]) == 1:
        raise StripeApiError(400, "A subscription must have at least one active plan. To cancel a subscription, "
                                  "please use the cancel endpoint.")
    behavior = _behavior(params)
    now = engine.now_for(subscription["customer"])
    at = _at(engine, subscription, params)
    before = engine.snapshot(subscription)
    line = _proration(engine, subscription, item, item["price"], int(item["quantity"]), at, credit=True)
    subscription["items"]["data"] = [i for i in subscription["items"]["data"] if i["id"] != item["id"]]
    _settle(engine, subscription, [line], behavior, now, before)
    return {"id": item["id"], "object": KIND, "deleted": True}


@route("GET", "/v1/subscription_items")
def subscription_items_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"subscription"}, ("subscription",))
    subscription = engine.get("subscription", str(params["subscription"]), "subscription", "subscription")
    url = f"/v1/subscription_items?subscription={subscription['id']}"
    # Stripe lists a subscription's items in the order they were added.
    ordered = [dict(item, _seq=-index) for index, item in enumerate(subscription["items"]["data"])]
    for item in ordered:
        item["_created"], item["created"] = item["created"], 0
    listed = list_object(url, ordered, params)
    listed["data"] = [dict(item, created=item["_created"]) for item in listed["data"]]
    return render(engine, listed, params, is_list=True)


__all__ = ["KIND"]
