"""The /v1 routes: each parses and validates params, calls the engine, renders the object."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from emulator.engine import Engine
from emulator.objects import validation
from emulator.state import DAY, Json, new_id
from emulator.wire.protocol import StripeApiError, check_params, expand, list_object, missing, to_bool, to_int

Handler = Callable[[Engine, dict[str, str], Json], Json]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile("^" + pattern.replace("{id}", r"(?P<id>[^/]+)") + "$"), handler))
        return handler

    return register


def public(obj: Json) -> Json:
    """Drop the emulator's private bookkeeping (keys starting with _) recursively."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def render(engine: Engine, obj: Json, params: Json, *, is_list: bool = False) -> Json:
    paths = params.get("expand") or []
    if not isinstance(paths, list):
        raise StripeApiError(400, "Invalid array", code="parameter_invalid_empty", param="expand")
    if is_list:
        first = obj["data"][0] if obj.get("data") else None
        validation.check_expand(first.get("object") if isinstance(first, dict) else None, paths, is_list=True)
        paths = [p.removeprefix("data.") for p in paths if p.startswith("data.")]
        obj = dict(obj)
        obj["data"] = [expand(public(item), paths, engine.find) for item in obj["data"]]
        return public(obj)
    validation.check_expand(obj.get("object"), paths)
    return public(expand(public(obj), paths, lambda object_id: public(engine.find(object_id) or {}) or None))


def created_filter(items: list[Json], value: Any, field: str = "created") -> list[Json]:
    if value in (None, ""):
        return items
    if isinstance(value, dict):
        bounds = {op: to_int(v, f"{field}[{op}]") for op, v in value.items()}
        for op in bounds:
            if op not in ("gt", "gte", "lt", "lte"):
                raise StripeApiError(400, f"Received unknown parameter: {field}[{op}]", code="parameter_unknown",
                                     param=f"{field}[{op}]")
        return [
            i for i in items
            if ("gt" not in bounds or i[field] > bounds["gt"]) and ("gte" not in bounds or i[field] >= bounds["gte"])
            and ("lt" not in bounds or i[field] < bounds["lt"]) and ("lte" not in bounds or i[field] <= bounds["lte"])
        ]
    exact = to_int(value, field)
    return [i for i in items if i[field] == exact]


LIST_PARAMS = {"limit", "starting_after", "ending_before", "created"}


def _list(engine: Engine, kind: str, url: str, params: Json, allowed: set[str],
          keep: Callable[[Json], bool] = lambda _o: True) -> Json:
    check_params(params, LIST_PARAMS | allowed)
    items = [o for o in engine.all(kind) if keep(o)]
    items = created_filter(items, params.get("created"))
    return render(engine, list_object(url, items, params), params, is_list=True)


# --- balance ---------------------------------------------------------------------------
@route("GET", "/v1/balance")
def balance(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    return {"object": "balance", "available": [{"amount": 0, "currency": "usd"}], "livemode": False,
            "pending": [{"amount": 0, "currency": "usd"}]}


# --- customers ---------------------------------------------------------------------------
CUSTOMER_PARAMS = {"email", "name", "description", "phone", "metadata", "test_clock", "payment_method",
                   "invoice_settings", "address"}


@route("POST", "/v1/customers")
def customers_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, CUSTOMER_PARAMS)
    return render(engine, engine.create_customer(params), params)


@route("GET", "/v1/customers/{id}")
def customers_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("customer", m["id"], "customer"), params)


@route("POST", "/v1/customers/{id}")
def customers_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, CUSTOMER_PARAMS - {"test_clock", "payment_method"})
    return render(engine, engine.update_customer(m["id"], params), params)


@route("DELETE", "/v1/customers/{id}")
def customers_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    customer = engine.get("customer", m["id"], "customer")
    customer["deleted"] = True
    engine.emit("customer.deleted", customer, created=engine.now_for(None))
    return {"id": m["id"], "object": "customer", "deleted": True}


@route("GET", "/v1/customers")
def customers_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    email = params.get("email")
    clock = params.get("test_clock")
    return _list(engine, "customer", "/v1/customers", params, {"email", "test_clock"},
                 lambda c: (not email or c.get("email") == email) and (not clock or c.get("test_clock") == clock))


# --- products and prices ------------------------------------------------------------------
@route("POST", "/v1/products")
def products_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"name", "id", "active", "description", "metadata"}, ("name",))
    return render(engine, engine.create_product(params), params)


@route("GET", "/v1/products/{id}")
def products_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("product", m["id"], "product"), params)


@route("POST", "/v1/products/{id}")
def products_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"name", "active", "description", "metadata"})
    product = engine.get("product", m["id"], "product")
    before = engine.snapshot(product)
    for field in ("name", "description"):
        if field in params:
            product[field] = params[field]
    if "active" in params:
        product["active"] = to_bool(params["active"], "active")
    if "metadata" in params:
        engine._merge_metadata(product, params["metadata"])
    if engine.snapshot(product) != before:
        product["updated"] = engine.now_for(None)
        engine.emit_update("product.updated", product, before, created=engine.now_for(None))
    return render(engine, product, params)


@route("GET", "/v1/products")
def products_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    active = params.get("active")
    return _list(engine, "product", "/v1/products", params, {"active"},
                 lambda p: active is None or p["active"] == to_bool(active, "active"))


PRICE_PARAMS = {"currency", "unit_amount", "product", "product_data", "recurring", "lookup_key", "nickname",
                "metadata", "active", "id"}


@route("POST", "/v1/prices")
def prices_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, PRICE_PARAMS, ("currency",))
    return render(engine, engine.create_price(params), params)


@route("GET", "/v1/prices/{id}")
def prices_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("price", m["id"], "price"), params)


@route("POST", "/v1/prices/{id}")
def prices_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"active", "metadata", "lookup_key", "nickname"})
    price = engine.get("price", m["id"], "price")
    before = engine.snapshot(price)
    if "active" in params:
        price["active"] = to_bool(params["active"], "active")
    for field in ("lookup_key", "nickname"):
        if field in params:
            price[field] = params[field] or None
    if "metadata" in params:
        engine._merge_metadata(price, params["metadata"])
    engine.emit_update("price.updated", price, before, created=engine.now_for(None))
    return render(engine, price, params)


@route("GET", "/v1/prices")
def prices_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    active = params.get("active")
    product = params.get("product")
    lookup_keys = params.get("lookup_keys") or []
    price_type = params.get("type")
    return _list(
        engine, "price", "/v1/prices", params, {"active", "product", "lookup_keys", "type", "currency"},
        lambda p: (active is None or p["active"] == to_bool(active, "active"))
        and (not product or p["product"] == product)
        and (not lookup_keys or p.get("lookup_key") in lookup_keys)
        and (not price_type or p["type"] == price_type),
    )


# --- payment methods -------------------------------------------------------------------------
@route("POST", "/v1/payment_methods")
def payment_methods_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"type", "card", "billing_details", "metadata"}, ("type",))
    return render(engine, engine.create_payment_method(params), params)


@route("GET", "/v1/payment_methods/{id}")
def payment_methods_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("payment_method", m["id"], "PaymentMethod"), params)


@route("POST", "/v1/payment_methods/{id}/attach")
def payment_methods_attach(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"customer"}, ("customer",))
    return render(engine, engine.attach_payment_method(m["id"], params["customer"]), params)


@route("POST", "/v1/payment_methods/{id}/detach")
def payment_methods_detach(engine: Engine, m: dict[str, str], params: Json) -> Json:
    pm = engine.get("payment_method", m["id"], "PaymentMethod")
    pm["customer"] = None
    return render(engine, pm, params)


@route("GET", "/v1/payment_methods")
def payment_methods_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    customer = params.get("customer")
    return _list(engine, "payment_method", "/v1/payment_methods", params, {"customer", "type"},
                 lambda pm: not customer or pm.get("customer") == customer)


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


@route("GET", "/v1/subscriptions/{id}")
def subscriptions_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("subscription", m["id"], "subscription"), params)


@route("POST", "/v1/subscriptions/{id}")
def subscriptions_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, SUBSCRIPTION_UPDATE)
    return render(engine, engine.update_subscription(m["id"], params), params)


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

    return _list(engine, "subscription", "/v1/subscriptions", params, {"status", "customer", "price", "test_clock"},
                 keep)


# --- invoices --------------------------------------------------------------------------------
@route("GET", "/v1/invoices/{id}")
def invoices_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("invoice", m["id"], "invoice"), params)


@route("GET", "/v1/invoices")
def invoices_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    customer = params.get("customer")
    subscription = params.get("subscription")
    status = params.get("status")
    return _list(
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


@route("POST", "/v1/invoices/{id}/pay")
def invoices_pay(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"payment_method", "off_session", "paid_out_of_band"})
    return render(engine, engine.pay_invoice(m["id"], params), params)


@route("POST", "/v1/invoices/{id}/void")
def invoices_void(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.void_invoice(m["id"]), params)


# --- payment intents and charges ----------------------------------------------------------------
@route("POST", "/v1/payment_intents")
def payment_intents_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"amount", "currency", "customer", "payment_method", "confirm", "description",
                          "metadata", "off_session", "payment_method_types", "automatic_payment_methods"},
                 ("amount", "currency"))
    return render(engine, engine.create_payment_intent(params), params)


@route("GET", "/v1/payment_intents/{id}")
def payment_intents_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("payment_intent", m["id"], "payment_intent"), params)


@route("POST", "/v1/payment_intents/{id}/confirm")
def payment_intents_confirm(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"payment_method", "return_url", "off_session"})
    return render(engine, engine.confirm_payment_intent(m["id"], params), params)


@route("GET", "/v1/payment_intents")
def payment_intents_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    customer = params.get("customer")
    return _list(engine, "payment_intent", "/v1/payment_intents", params, {"customer"},
                 lambda p: not customer or p.get("customer") == customer)


@route("GET", "/v1/charges/{id}")
def charges_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("charge", m["id"], "charge"), params)


@route("POST", "/v1/charges/{id}")
def charges_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"metadata", "description", "shipping"})
    return render(engine, engine.update_charge(m["id"], params), params)


@route("GET", "/v1/charges")
def charges_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    customer = params.get("customer")
    intent = params.get("payment_intent")
    return _list(engine, "charge", "/v1/charges", params, {"customer", "payment_intent"},
                 lambda c: (not customer or c.get("customer") == customer)
                 and (not intent or c.get("payment_intent") == intent))


# --- refunds ----------------------------------------------------------------------------------
@route("POST", "/v1/refunds")
def refunds_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"charge", "payment_intent", "amount", "reason", "metadata"})
    return render(engine, engine.create_refund(params), params)


@route("GET", "/v1/refunds/{id}")
def refunds_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("refund", m["id"], "refund"), params)


@route("GET", "/v1/refunds")
def refunds_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    charge = params.get("charge")
    return _list(engine, "refund", "/v1/refunds", params, {"charge", "payment_intent"},
                 lambda r: not charge or r["charge"] == charge)


# --- disputes -----------------------------------------------------------------------------------
@route("GET", "/v1/disputes/{id}")
def disputes_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("dispute", m["id"], "dispute"), params)


@route("POST", "/v1/disputes/{id}")
def disputes_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"evidence", "submit", "metadata"})
    return render(engine, engine.update_dispute(m["id"], params), params)


@route("POST", "/v1/disputes/{id}/close")
def disputes_close(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.close_dispute(m["id"]), params)


@route("GET", "/v1/disputes")
def disputes_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    charge = params.get("charge")
    intent = params.get("payment_intent")
    return _list(engine, "dispute", "/v1/disputes", params, {"charge", "payment_intent"},
                 lambda d: (not charge or d["charge"] == charge) and (not intent or d["payment_intent"] == intent))


# --- radar early fraud warnings --------------------------------------------------------------------
@route("GET", "/v1/radar/early_fraud_warnings/{id}")
def efw_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("radar.early_fraud_warning", m["id"], "radar.early_fraud_warning"), params)


@route("GET", "/v1/radar/early_fraud_warnings")
def efw_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    charge = params.get("charge")
    intent = params.get("payment_intent")
    return _list(engine, "radar.early_fraud_warning", "/v1/radar/early_fraud_warnings", params,
                 {"charge", "payment_intent"},
                 lambda e: (not charge or e["charge"] == charge) and (not intent or e["payment_intent"] == intent))


# --- files ----------------------------------------------------------------------------------------
@route("POST", "/v1/files")
def files_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    """Multipart upload; the server hands the file part over as (filename, bytes)."""
    check_params(params, {"file", "purpose", "file_link_data"}, ("purpose",))
    if not isinstance(params.get("file"), tuple):
        raise StripeApiError(400, "Missing required param: file.", code="parameter_missing", param="file")
    filename, content = params["file"]
    return public(engine.create_file(content, filename, str(params["purpose"])))


@route("GET", "/v1/files/{id}")
def files_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("file", m["id"], "file"), params)


@route("GET", "/v1/files")
def files_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    purpose = params.get("purpose")
    return _list(engine, "file", "/v1/files", params, {"purpose"}, lambda f: not purpose or f["purpose"] == purpose)


# --- events ------------------------------------------------------------------------------------------
@route("GET", "/v1/events/{id}")
def events_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("event", m["id"], "event"), params)


def _type_matches(event_type: str, pattern: str) -> bool:
    return event_type == pattern or (pattern.endswith("*") and event_type.startswith(pattern[:-1]))


@route("GET", "/v1/events")
def events_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    wanted_type = params.get("type")
    types = params.get("types") or []
    if wanted_type and types:
        raise StripeApiError(400, "You may only specify one of these parameters: type, types.", param="types")
    delivery = params.get("delivery_success")
    delivery_value = None if delivery in (None, "") else to_bool(delivery, "delivery_success")
    return _list(
        engine, "event", "/v1/events", params, {"type", "types", "delivery_success"},
        lambda e: (not wanted_type or _type_matches(e["type"], wanted_type))
        and (not types or any(_type_matches(e["type"], t) for t in types))
        and (delivery_value is None or e.get("_delivery_success") is delivery_value),
    )


# --- webhook endpoints ---------------------------------------------------------------------------------
@route("POST", "/v1/webhook_endpoints")
def webhook_endpoints_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"url", "enabled_events", "description", "api_version", "metadata", "connect"},
                 ("url", "enabled_events"))
    if not str(params["url"]).startswith(("http://", "https://")):
        raise StripeApiError(400, "Invalid URL: must be a valid http(s) URL.", code="url_invalid", param="url")
    endpoint = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": params.get("api_version"),
        "application": None,
        "created": engine.now_for(None),
        "description": params.get("description"),
        "enabled_events": list(params["enabled_events"]),
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "secret": "whsec_" + new_id("x")[2:] + new_id("x")[2:10],
        "status": "enabled",
        "url": params["url"],
    }
    engine.put("webhook_endpoint", endpoint)
    return public(endpoint)


def _endpoint_view(endpoint: Json) -> Json:
    # Stripe returns the signing secret only when the endpoint is created.
    return {k: v for k, v in public(endpoint).items() if k != "secret"}


@route("GET", "/v1/webhook_endpoints/{id}")
def webhook_endpoints_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return _endpoint_view(engine.get("webhook_endpoint", m["id"], "webhook_endpoint"))


@route("POST", "/v1/webhook_endpoints/{id}")
def webhook_endpoints_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"url", "enabled_events", "description", "disabled", "metadata"})
    endpoint = engine.get("webhook_endpoint", m["id"], "webhook_endpoint")
    for field in ("url", "description"):
        if field in params:
            endpoint[field] = params[field]
    if "enabled_events" in params:
        endpoint["enabled_events"] = list(params["enabled_events"])
    if "disabled" in params:
        endpoint["status"] = "disabled" if to_bool(params["disabled"], "disabled") else "enabled"
    return _endpoint_view(endpoint)


@route("DELETE", "/v1/webhook_endpoints/{id}")
def webhook_endpoints_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    endpoint = engine.get("webhook_endpoint", m["id"], "webhook_endpoint")
    endpoint["deleted"] = True
    return {"id": m["id"], "object": "webhook_endpoint", "deleted": True}


@route("GET", "/v1/webhook_endpoints")
def webhook_endpoints_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS)
    listed = list_object("/v1/webhook_endpoints", engine.all("webhook_endpoint"), params)
    listed["data"] = [_endpoint_view(e) for e in listed["data"]]
    return listed


# --- billing portal configurations ---------------------------------------------------------------------
@route("POST", "/v1/billing_portal/configurations")
def portal_configurations_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"features", "business_profile", "default_return_url", "metadata", "name"}, ("features",))
    return render(engine, engine.put("billing_portal.configuration", portal_configuration(engine, params)), params)


def portal_configuration(engine: Engine, params: Json) -> Json:
    features = params.get("features") or {}

    def enabled(name: str) -> bool:
        return to_bool((features.get(name) or {}).get("enabled", False), f"features[{name}][enabled]")

    update = features.get("subscription_update") or {}
    cancel = features.get("subscription_cancel") or {}
    return {
        "id": new_id("bpc"),
        "object": "billing_portal.configuration",
        "active": True,
        "business_profile": params.get("business_profile") or {},
        "created": engine.now_for(None),
        "default_return_url": params.get("default_return_url"),
        "features": {
            "customer_update": {"enabled": enabled("customer_update"), "allowed_updates": []},
            "invoice_history": {"enabled": enabled("invoice_history")},
            "payment_method_update": {"enabled": enabled("payment_method_update")},
            "subscription_cancel": {"enabled": enabled("subscription_cancel"),
                                    "mode": cancel.get("mode", "at_period_end"),
                                    "proration_behavior": cancel.get("proration_behavior", "none")},
            "subscription_update": {
                "enabled": enabled("subscription_update"),
                "default_allowed_updates": list(update.get("default_allowed_updates") or []),
                "proration_behavior": update.get("proration_behavior", "create_prorations"),
                "products": list(update.get("products") or []),
                "schedule_at_period_end": update.get("schedule_at_period_end") or {"conditions": []},
            },
        },
        "is_default": not engine.all("billing_portal.configuration"),
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "name": params.get("name"),
        "updated": engine.now_for(None),
    }


@route("GET", "/v1/billing_portal/configurations/{id}")
def portal_configurations_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("billing_portal.configuration", m["id"], "billing_portal.configuration"), params)


@route("POST", "/v1/billing_portal/configurations/{id}")
def portal_configurations_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"features", "business_profile", "default_return_url", "metadata", "name", "active"})
    configuration = engine.get("billing_portal.configuration", m["id"], "billing_portal.configuration")
    if "active" in params:
        configuration["active"] = to_bool(params["active"], "active")
    if "features" in params:
        configuration["features"] = portal_configuration(engine, params)["features"]
    return render(engine, configuration, params)


@route("GET", "/v1/billing_portal/configurations")
def portal_configurations_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    return _list(engine, "billing_portal.configuration", "/v1/billing_portal/configurations", params,
                 {"active", "is_default"})


# --- checkout sessions ------------------------------------------------------------------------------------
@route("POST", "/v1/checkout/sessions")
def checkout_sessions_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"mode", "line_items", "customer", "customer_email", "success_url", "cancel_url",
                          "metadata", "client_reference_id", "subscription_data", "allow_promotion_codes",
                          "automatic_tax", "payment_method_types"}, ("mode",))
    if params["mode"] not in ("payment", "setup", "subscription"):
        raise StripeApiError(400, "Invalid mode", code="parameter_invalid_string", param="mode")
    line_items = params.get("line_items") or []
    if params["mode"] == "subscription" and not line_items:
        raise StripeApiError(400, "Missing required param: line_items.", code="parameter_missing",
                             param="line_items")
    for index, line in enumerate(line_items):
        engine.get("price", str(line.get("price")), "price", f"line_items[{index}][price]")
    if params.get("customer"):
        engine.get("customer", params["customer"], "customer", "customer")
    session_id = new_id("cs_test")
    session = {
        "id": session_id,
        "object": "checkout.session",
        "client_reference_id": params.get("client_reference_id"),
        "created": engine.now_for(params.get("customer")),
        "customer": params.get("customer"),
        "customer_email": params.get("customer_email"),
        "expires_at": engine.now_for(params.get("customer")) + DAY,
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "mode": params["mode"],
        "payment_status": "unpaid",
        "status": "open",
        "subscription": None,
        "success_url": params.get("success_url"),
        "cancel_url": params.get("cancel_url"),
        "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        "_line_items": line_items,
        "_subscription_data": params.get("subscription_data") or {},
    }
    return render(engine, engine.put("checkout.session", session), params)



@route("GET", "/v1/checkout/sessions/{id}")
def checkout_sessions_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.get("checkout.session", m["id"], "checkout.session"), params)


@route("GET", "/v1/checkout/sessions")
def checkout_sessions_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    return _list(engine, "checkout.session", "/v1/checkout/sessions", params, {"customer", "subscription"})


def complete_checkout(engine: Engine, session_id: str, payment_method: str) -> Json:
    """What a customer finishing Checkout does: customer, card, subscription, then the event."""
    session = engine.get("checkout.session", session_id, "checkout.session")
    if session["status"] != "open":
        raise StripeApiError(400, "This Checkout Session is no longer open.")
    customer_id = session.get("customer")
    if not customer_id:
        customer_id = engine.create_customer({"email": session.get("customer_email"),
                                              "metadata": {"user_id": session.get("client_reference_id") or ""}})["id"]
    pm = engine.attach_payment_method(payment_method, customer_id)
    engine.objects["customer"][customer_id]["invoice_settings"]["default_payment_method"] = pm["id"]
    if session["mode"] == "subscription":
        items = [{"price": line["price"], "quantity": line.get("quantity", 1)} for line in session["_line_items"]]
        metadata = dict((session["_subscription_data"] or {}).get("metadata") or {})
        subscription = engine.create_subscription({"customer": customer_id, "items": items, "metadata": metadata,
                                                   "default_payment_method": pm["id"]})
        session["subscription"] = subscription["id"]
        paid = subscription["status"] == "active"
    else:
        paid = True
    session.update(customer=customer_id, status="complete", payment_status="paid" if paid else "unpaid")
    engine.emit("checkout.session.completed", session, created=engine.now_for(customer_id))
    return public(session)


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
    return _list(engine, "test_clock", "/v1/test_helpers/test_clocks", params, set())


def match_route(method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
    for route_method, pattern, handler in ROUTES:
        if route_method == method:
            found = pattern.match(path)
            if found:
                return handler, found.groupdict()
    return None


def known_path(path: str) -> bool:
    return any(pattern.match(path) for _m, pattern, _h in ROUTES)


__all__ = ["ROUTES", "complete_checkout", "known_path", "match_route", "missing", "render"]
