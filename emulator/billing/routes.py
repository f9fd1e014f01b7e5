"""The /v1 routes of subscriptions, invoices (more in billing/invoice_actions.py) and test clocks."""

from __future__ import annotations

from emulator.engine import Engine
from emulator.state import DAY, Json, new_id
from emulator.wire.protocol import check_params, to_int
from emulator.wire.routes import call, list_kind, public, render, retrieve, route

# --- subscriptions ---------------------------------------------------------------------------
SUBSCRIPTION_CREATE = {"customer", "items", "default_payment_method", "metadata", "payment_behavior",
                       "proration_behavior", "collection_method", "off_session", "cancel_at_period_end", "discounts"}
SUBSCRIPTION_UPDATE = {"items", "default_payment_method", "metadata", "payment_behavior", "proration_behavior",
                       "proration_date", "cancel_at_period_end", "off_session", "collection_method", "discounts"}


@route("POST", "/v1/subscriptions")
def subscriptions_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, SUBSCRIPTION_CREATE, ("customer",))
    subscription = engine.create_subscription(params)
    if "cancel_at_period_end" in params:
        engine.update_subscription(subscription["id"], {"cancel_at_period_end": params["cancel_at_period_end"]})
    return render(engine, subscription, params)


retrieve("/v1/subscriptions/{id}", "subscription")


call("POST", "/v1/subscriptions/{id}", Engine.update_subscription, SUBSCRIPTION_UPDATE)


@route("DELETE", "/v1/subscriptions/{id}")
def subscriptions_cancel(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"invoice_now", "prorate", "cancellation_details"})
    return render(engine, engine.cancel_subscription(m["id"]), params)


@route("GET", "/v1/subscriptions")
def subscriptions_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    status = params.get("status")
    customer = params.get("customer")
    price = params.get("price")
    clock = params.get("test_clock")

    def keep(s: Json) -> bool:
        if status in (None, ""):
            if s["status"] in ("canceled", "incomplete_expired"):
                return False
        elif status != "all" and s["status"] != status:
            return False
        return ((not customer or s["customer"] == customer)
                and (not price or any(i["price"]["id"] == price for i in s["items"]["data"]))
                and (not clock or s.get("test_clock") == clock))

    return list_kind(engine, "subscription", "/v1/subscriptions", params, {"status", "customer", "price", "test_clock"},
                     keep)


# --- invoices --------------------------------------------------------------------------------
retrieve("/v1/invoices/{id}", "invoice")


@route("GET", "/v1/invoices")
def invoices_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    customer = params.get("customer")
    subscription = params.get("subscription")
    status = params.get("status")
    return list_kind(
        engine, "invoice", "/v1/invoices", params, {"customer", "subscription", "status", "collection_method"},
        lambda i: (not customer or i["customer"] == customer)
        and (not subscription or ((i.get("parent") or {}).get("subscription_details") or {}).get("subscription")
             == subscription)
        and (not status or i["status"] == status),
    )


@route("POST", "/v1/invoices")
def invoices_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"customer", "auto_advance", "collection_method", "currency", "description", "metadata",
                          "pending_invoice_items_behavior", "days_until_due"}, ("customer",))
    return render(engine, engine.create_invoice(params), params)


@route("POST", "/v1/invoiceitems")
def invoice_items_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"customer", "invoice", "amount", "currency", "description", "metadata"},
                 ("customer", "invoice", "amount"))
    return render(engine, engine.create_invoice_item(params), params)


@route("POST", "/v1/invoices/create_preview")
def invoices_preview(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"customer", "subscription", "subscription_details", "automatic_tax", "preview_mode"})
    return render(engine, engine.preview_invoice(params), params)


@route("POST", "/v1/invoices/{id}/finalize")
def invoices_finalize(engine: Engine, m: dict[str, str], params: Json) -> Json:
    invoice = engine.get("invoice", m["id"], "invoice")
    engine.finalize_invoice(invoice, engine.now_for(invoice["customer"]))
    return render(engine, invoice, params)


call("POST", "/v1/invoices/{id}/pay", Engine.pay_invoice, {"payment_method", "off_session", "paid_out_of_band"})


call("POST", "/v1/invoices/{id}/void", lambda engine, object_id, _params: engine.void_invoice(object_id))


# --- test clocks --------------------------------------------------------------------------------------------
@route("POST", "/v1/test_helpers/test_clocks")
def test_clocks_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"frozen_time", "name"}, ("frozen_time",))
    clock: Json = {
        "id": new_id("clock"),
        "object": "test_helpers.test_clock",
        "created": engine.now_for(None),
        "deletes_after": engine.now_for(None) + 30 * DAY,
        "frozen_time": to_int(params["frozen_time"], "frozen_time"),
        "livemode": False,
        "name": params.get("name"),
        "status": "ready",
        "status_details": {},
    }
    engine.put("test_clock", clock)
    engine.emit("test_helpers.test_clock.created", clock, created=clock["created"])
    return public(clock)


@route("GET", "/v1/test_helpers/test_clocks/{id}")
def test_clocks_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return public(engine.get("test_clock", m["id"], "test_helpers.test_clock"))


@route("POST", "/v1/test_helpers/test_clocks/{id}/advance")
def test_clocks_advance(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"frozen_time"}, ("frozen_time",))
    return public(engine.advance_clock(m["id"], to_int(params["frozen_time"], "frozen_time")))


@route("DELETE", "/v1/test_helpers/test_clocks/{id}")
def test_clocks_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    clock = engine.get("test_clock", m["id"], "test_helpers.test_clock")
    clock["deleted"] = True
    for customer in engine.all("customer"):
        if customer.get("test_clock") == m["id"]:
            customer["deleted"] = True
    return {"id": m["id"], "object": "test_helpers.test_clock", "deleted": True}


@route("GET", "/v1/test_helpers/test_clocks")
def test_clocks_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    return list_kind(engine, "test_clock", "/v1/test_helpers/test_clocks", params, set())
